"""The client side towards backends: request preparation, backends and the HTTP/1.1 pool."""
