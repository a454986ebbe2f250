"""The gateway: what an API call passes through, one folder per stage (docs/gateway.md).

``transport`` (bytes from the client) -> ``exchange`` (admission, policies, forwarding, the
gateway's own answers) -> ``upstream`` (the client to backends); ``snapshot`` is the compiled
config every request reads, ``recording`` what each call leaves behind (usage, access log).
"""
