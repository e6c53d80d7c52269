"""Ground truth: labels in COCO, YOLO and Pascal VOC formats (:mod:`.labels`), scoring against them
(:mod:`.evaluate`), and ``mldeploy eval`` as a library function (:mod:`.run`)."""
