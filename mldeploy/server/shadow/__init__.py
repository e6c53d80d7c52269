"""The live shadow: a bounded queue of jobs (:mod:`.mirror`) run by a child process (:mod:`.runner`)."""
