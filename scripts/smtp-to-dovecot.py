#!/usr/bin/env python3
"""Test SMTP server: hands every accepted mail to Dovecot's LDA, one delivery per recipient.

    smtp-to-dovecot.py <dovecot.conf> [port] [--control-dir DIR] [--tls-cert PEM --tls-key PEM]

Port 0 or absent: a free one. Prints "smtp listening on <port>" once ready. Runs in the project
venv (PyPI aiosmtpd); `scripts/stack.sh install` installs it. A recipient Dovecot does not know is
refused with 550, an LDA failure answers 451 (try again), as a real MTA would.

--control-dir DIR: failure injection for tests. Before delivering, the file DIR/<recipient> (the
address as given, lowercased) is read if present: "<code> <n>" answers the DATA with that SMTP
code (e.g. 451, 550) for the next n attempts to that recipient (then the file is removed and mail
flows again), "<code> always" for every attempt. Each attempt is appended to DIR/<recipient>.log
("refused <code>" or "accepted"), so a test can count them.

--tls-cert/--tls-key: also listen on a second port that offers STARTTLS and requires it before
MAIL FROM (printed as "smtp starttls listening on <port>"), like a submission server on 587.
"""
import argparse
import asyncio
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP

LDA = "/usr/lib/dovecot/dovecot-lda"


class DovecotHandler:
    def __init__(self, conf, control_dir):
        self.conf = conf
        self.control_dir = control_dir

    def _log(self, rcpt, line):
        with open(os.path.join(self.control_dir, rcpt + ".log"), "a") as f:
            f.write(line + "\n")

    def _injected_failure(self, rcpt):
        """The SMTP answer a control file asks for, or None to deliver."""
        if not self.control_dir or "/" in rcpt or rcpt.startswith("."):
            return None
        path = os.path.join(self.control_dir, rcpt)
        try:
            with open(path) as f:
                code, count = f.read().split()
        except (FileNotFoundError, ValueError):
            return None
        if count != "always":
            left = int(count) - 1
            if left <= 0:
                os.remove(path)
            else:
                tmp = path + ".tmp"
                with open(tmp, "w") as f:
                    f.write(f"{code} {left}\n")
                os.replace(tmp, path)
        return f"{code} injected failure for {rcpt}"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        for rcpt in envelope.rcpt_tos:
            failure = self._injected_failure(rcpt.lower())
            if failure:
                self._log(rcpt.lower(), "refused " + failure.split()[0])
                return failure
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
        if self.control_dir:
            for rcpt in envelope.rcpt_tos:
                if "/" not in rcpt and not rcpt.startswith("."):
                    self._log(rcpt.lower(), "accepted")
        return "250 OK"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("conf")
    p.add_argument("port", nargs="?", type=int, default=0)
    p.add_argument("--control-dir")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    handler = DovecotHandler(args.conf, args.control_dir)
    server = await loop.create_server(
        lambda: SMTP(handler, enable_SMTPUTF8=True, hostname="smtp.test"),
        "127.0.0.1", args.port)
    print(f"smtp listening on {server.sockets[0].getsockname()[1]}", flush=True)
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        tls_server = await loop.create_server(
            lambda: SMTP(handler, enable_SMTPUTF8=True, hostname="smtp.test",
                         tls_context=ctx, require_starttls=True),
            "127.0.0.1", 0)
        print(f"smtp starttls listening on {tls_server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
