#!/usr/bin/env bash
# The project's test command (README.md): builds everything with warnings as errors and runs every test project.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
# A merge's leftover conflict markers fail the run before anything builds (docs are not compiled, so nothing else would).
if [ -d .git ] && git grep -nE '^(<<<<<<<|>>>>>>>)( |$)' -- . >&2; then echo "conflict markers in tracked files" >&2; exit 1; fi
dotnet build Peft.Generators.sln -c Release
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
dotnet test Peft.Generators.sln -c Release --no-build --logger "console;verbosity=normal" 2>&1 | tee "$log" || status=$?
passed=$( (grep -E '^\s+Passed: [0-9]+' "$log" || true) | awk '{s+=$2} END {print s+0}')
failed=$( (grep -E '^\s+Failed: [0-9]+' "$log" || true) | awk '{s+=$2} END {print s+0}')
echo "${passed} passed, ${failed} failed"
if [ "$passed" -eq 0 ]; then echo "no tests ran" >&2; exit 1; fi
exit "$status"
