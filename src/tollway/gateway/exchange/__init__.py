"""What a request means: the Gateway (ASGI entry, admission, lifecycle) and its policy work."""
