"""The compiled snapshot requests read: routes, key index, policies; loaded and kept fresh."""
