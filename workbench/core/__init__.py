"""Pure logic of the workbench: no widgets here; heavy libraries are imported on use.

Importing this package sets Ultralytics' offline switches (environment variables only), because they count only
when set before Ultralytics' own first import.
"""

from .offline import set_environment

set_environment()
