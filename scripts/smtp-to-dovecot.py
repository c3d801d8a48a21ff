#!/usr/bin/env python3
"""Test SMTP server: hands every accepted mail to Dovecot's LDA, one delivery per recipient.

    smtp-to-dovecot.py <dovecot.conf> [port]     (port 0 or absent: a free one)

Prints "smtp listening on <port>" once ready. Runs in the project venv (PyPI aiosmtpd);
`scripts/stack.sh install` installs it. A recipient Dovecot does not know is refused with 550,
an LDA failure answers 451 (try again), as a real MTA would.
"""
import asyncio
import sys

from aiosmtpd.smtp import SMTP

LDA = "/usr/lib/dovecot/dovecot-lda"


class DovecotHandler:
    def __init__(self, conf):
        self.conf = conf

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        for rcpt in envelope.rcpt_tos:
            proc = await asyncio.create_subprocess_exec(
                LDA, "-c", self.conf, "-d", rcpt, "-f", envelope.mail_from or "<>",
                stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate(content)
            if proc.returncode == 67:  # EX_NOUSER
                return f"550 no such user {rcpt}"
            if proc.returncode != 0:
                print(f"dovecot-lda {rcpt}: {proc.returncode} {err.decode(errors='replace')}",
                      file=sys.stderr, flush=True)
                return "451 delivery failed, try again"
        return "250 OK"


async def main():
    conf = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    loop = asyncio.get_running_loop()
    handler = DovecotHandler(conf)
    server = await loop.create_server(
        lambda: SMTP(handler, enable_SMTPUTF8=True, hostname="smtp.test"), "127.0.0.1", port)
    print(f"smtp listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
