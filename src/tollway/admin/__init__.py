"""The admin REST API at ``/admin/api/v1`` (docs/admin-api.md)."""

from tollway.admin.app import PREFIX
from tollway.admin.factory import create_admin_api

__all__ = ["PREFIX", "create_admin_api"]
