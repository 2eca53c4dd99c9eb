#!/usr/bin/env bash
# Stop a disaggregated run: disagg/stop.sh [RUN_DIR] (default: the last one started).
exec "$(dirname "$0")/../start_disaggregated_servers.sh" stop "$@"
