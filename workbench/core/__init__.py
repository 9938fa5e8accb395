"""Pure logic of the workbench, in layers (see pyproject's import-linter contracts); no widgets here.

Importing this package sets Ultralytics' offline switches (`YOLO_OFFLINE=1`, `YOLO_AUTOINSTALL=False`) where the
user has not set them, because Ultralytics reads them only at its own first import; a switch the user set is kept,
with a warning saying what it allows. Heavy libraries are imported on use.
"""

from .offline import set_environment

set_environment()
