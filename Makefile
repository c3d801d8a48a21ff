# Developer entry points; the logic lives in scripts/.
SHELL := /bin/bash
INBOX_CACHE ?= $(HOME)/.cache/inbox-engine
export CARGO_TARGET_DIR ?= $(INBOX_CACHE)/target

# `make token ROLE=manager USER=alice [NAME="Alice A."]`. USER (and NAME) are also environment
# variables, so take them only from the command line; `USER ?= alice` would always yield $USER.
ROLE ?= client
token_arg = $(if $(filter command line,$(origin $(1))),$($(1)),$(2))
TOKEN_USER = $(call token_arg,USER,alice)
TOKEN_NAME = $(call token_arg,NAME,)

.PHONY: run test bench token stack-up stack-down stack-status fmt lint

# `make run CHANNELS=local`: also Telegram and email against local peers (see README).
run:
	CHANNELS='$(CHANNELS)' scripts/run.sh

test:
	scripts/test.sh

# `make bench ARGS="--rates 50,100,200,500 --duration 30 --tickets 2000"`; `--help` lists the flags;
# `--release` builds and runs the engine optimised.
bench:
	scripts/bench.sh $(ARGS)

token:
	@cargo build -q --bin inbox-token
	@set -a; . config/dev.env; set +a; \
	  "$(CARGO_TARGET_DIR)/debug/inbox-token" --role '$(ROLE)' --user '$(TOKEN_USER)' $(if $(TOKEN_NAME),--name '$(TOKEN_NAME)')

stack-up:
	scripts/stack.sh install
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

stack-status:
	@scripts/stack.sh status || true

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings
