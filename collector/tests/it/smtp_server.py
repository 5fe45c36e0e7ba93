"""A real SMTP server for the notification tests, on Debian's python3-aiosmtpd.

Usage: smtp_server.py OUTDIR MODE [CERT KEY] [USER PASSWORD]
  MODE: starttls (STARTTLS offered and required before MAIL), implicit (TLS from the first
  byte), plain (no TLS offered at all).
Listens on 127.0.0.1 on a free port and prints "PORT <n>" once it accepts connections.
Each message received is written to OUTDIR/<n>.eml (as received) with OUTDIR/<n>.json
beside it: envelope sender and recipients, whether the session was under TLS, and the
authenticated login (if any). With USER and PASSWORD, AUTH is required (and only over TLS).
"""

import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    outdir, mode = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    ctx = None
    if mode in ("starttls", "implicit"):
        cert, key, rest = rest[0], rest[1], rest[2:]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
    user = password = None
    if rest:
        user, password = rest[0].encode(), rest[1].encode()
    count = [0]

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            count[0] += 1
            n = count[0]
            login = None
            if isinstance(session.auth_data, LoginPassword):
                login = session.auth_data.login.decode()
            meta = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "tls": session.ssl is not None or mode == "implicit",
                "login": login,
            }
            with open(os.path.join(outdir, f"{n}.eml"), "wb") as f:
                f.write(envelope.original_content)
            tmp = os.path.join(outdir, f"{n}.json.tmp")
            with open(tmp, "w") as f:
                json.dump(meta, f)
            os.rename(tmp, os.path.join(outdir, f"{n}.json"))
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user
            and auth_data.password == password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def factory():
        kwargs = {"hostname": "localhost"}
        if mode == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        if user is not None:
            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        else:
            kwargs.update(auth_require_tls=False)
        return SMTP(Handler(), **kwargs)

    async def serve():
        server = await asyncio.get_running_loop().create_server(
            factory, "127.0.0.1", 0, ssl=ctx if mode == "implicit" else None
        )
        print("PORT", server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
