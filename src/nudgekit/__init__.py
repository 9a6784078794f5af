"""nudgekit: a CRM messaging engine. The public surface is small: open a Workspace and use it."""

from nudgekit.profiles.contacts import FieldError
from nudgekit.workspace import Workspace, WorkspaceNotFound

__all__ = ["FieldError", "Workspace", "WorkspaceNotFound"]
__version__ = "0.1.0"
