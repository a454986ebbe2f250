"""What each call leaves behind: usage rows and the access log."""
