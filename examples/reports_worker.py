"""The `reports` team's workers (examples/config/reports.yaml), written with the SDK.

    python examples/reports_worker.py --output reports-output --concurrency 4

The handlers live in flow45/cli/demo/reports_worker.py, inside the installed package, so that
`flow45 demo` has them from any folder; read them there. This file runs them as a worker process:
with FLOW45_AMQP_URL set (a worker user of team reports) over RabbitMQ, without it on the embedded
default's database. SIGTERM or Ctrl-C stops it cleanly.
"""

from flow45.cli.demo.reports_worker import REGIONS, build, main, types  # noqa: F401  (the example's API)

if __name__ == "__main__":
    main()
