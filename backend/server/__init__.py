"""The Recast 4D backend server (ZeroMQ ROUTER, I/O loop + worker, job store on disk).

    from backend.server import Server, ServerConfig
    server = Server(ServerConfig(jobs_dir=path))
    info = server.start()          # binds 127.0.0.1:<random>, writes the 0600 connection file
    ...
    server.stop()
"""

from .app import CAPABILITIES, Server, serve_forever
from .config import BindRefused, ServerConfig, check_bind, is_loopback

__all__ = ["CAPABILITIES", "BindRefused", "Server", "ServerConfig", "check_bind", "is_loopback", "serve_forever"]
