#!/usr/bin/env bash
# The project's test command (README.md): builds everything with warnings as errors and runs every test project.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
dotnet build Peft.Generators.sln -c Release
dotnet test Peft.Generators.sln -c Release --no-build --logger "console;verbosity=normal"
