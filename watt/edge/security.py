"""``server.securityHeaders``: headers added to every response (stage ``security-headers``).

Only where the application did not set the header itself.
``Strict-Transport-Security`` goes on HTTPS requests only (TLS at the
entrypoint, or ``https`` from a trusted proxy): browsers ignore it over plain
HTTP, and sending it there would pin a site that has no TLS.
"""

from __future__ import annotations

from . import Stage, register_stage


class SecurityHeaders(Stage):
    def __init__(self, cfg) -> None:
        pairs = []
        if cfg.content_type_options:
            pairs.append((b"x-content-type-options", b"nosniff"))
        for name, value in ((b"x-frame-options", cfg.frame_options),
                            (b"referrer-policy", cfg.referrer_policy),
                            (b"content-security-policy", cfg.content_security_policy),
                            (b"cross-origin-opener-policy", cfg.cross_origin_opener_policy)):
            if value is not None:
                pairs.append((name, value.encode("latin-1")))
        self.pairs = pairs
        self.hsts = None
        if cfg.hsts:
            value = b"max-age=%d" % cfg.hsts_max_age
            if cfg.hsts_include_sub_domains:
                value += b"; includeSubDomains"
            self.hsts = (b"strict-transport-security", value)

    def on_response(self, req, status, headers):
        present = {name for name, _ in headers}
        extra = [pair for pair in self.pairs if pair[0] not in present]
        if self.hsts is not None and req.scheme == "https" and self.hsts[0] not in present:
            extra.append(self.hsts)
        return headers + extra if extra else headers


def factory(config, info):
    cfg = config.server.security_headers
    if cfg is False:
        return None
    if cfg is True:
        from ..config_edge import SecurityHeadersConfig

        cfg = SecurityHeadersConfig()
    return SecurityHeaders(cfg)


register_stage("security-headers", factory)
