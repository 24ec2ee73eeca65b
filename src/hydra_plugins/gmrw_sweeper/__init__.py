"""gmrw's Hydra plugin: gmrw-train's sweeper (:mod:`.gmrw_sweeper`, selected in
``configs/hydra/train.yaml``). Hydra finds it because it scans the ``hydra_plugins`` namespace."""
