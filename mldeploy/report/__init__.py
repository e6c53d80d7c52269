"""Rendering of results: plain data (:mod:`.serialize`), rich tables (:mod:`.tables`), JSON and JUnit
files (:mod:`.json_junit`), the HTML report (:mod:`.html`). Each reads the same typed results."""
