"""``tollway demo``: a gateway fronting the sample APIs, with a demo developer and key."""
