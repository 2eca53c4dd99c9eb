#!/usr/bin/env bash
# Same as ./start_disaggregated_servers.sh at the repository root.
exec "$(dirname "$0")/../start_disaggregated_servers.sh" "$@"
