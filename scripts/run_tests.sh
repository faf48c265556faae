#!/usr/bin/env bash
# The README's test command (`make test`) after set-up:
#   1. colcon-build this package into a temporary workspace and check the
#      install tree the way `ros2 run` / `ros2 launch` resolve it;
#   2. run pytest inside a private network namespace (no interface but lo),
#      so DDS cannot send a packet off this machine.  Where namespaces are not
#      allowed, fall back to ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST alone and
#      say so.
# Extra arguments go to pytest (e.g. `make test ARGS="-k mapdb"`).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
VENV="${VENV:-.venv}"
PY="$REPO/$VENV/bin/python"
export VIRTUAL_ENV="$REPO/$VENV"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
unset ROS_LOCALHOST_ONLY ROS_STATIC_PEERS
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"

WS="$(mktemp -d -t distilvpr-ws-XXXXXX)"
trap 'rm -rf "$WS"' EXIT

if [ "${SKIP_COLCON:-0}" != "1" ]; then
  echo "==> colcon build (workspace $WS)"
  (cd "$WS" && "$VIRTUAL_ENV/bin/colcon" --log-base "$WS/log" list --base-paths "$REPO" | tee "$WS/colcon_list.txt")
  grep -q "distilvpr_ros.*(ros.ament_python)" "$WS/colcon_list.txt" || {
    echo "error: colcon does not see distilvpr_ros as ros.ament_python (check package.xml maintainer e-mail)" >&2; exit 1; }
  (cd "$WS" && "$VIRTUAL_ENV/bin/colcon" --log-base "$WS/log" build --base-paths "$REPO" \
      --build-base "$WS/build" --install-base "$WS/install" >"$WS/colcon_build.txt" 2>&1) || {
    tail -50 "$WS/colcon_build.txt"; echo "error: colcon build failed" >&2; exit 1; }
  tail -3 "$WS/colcon_build.txt"
  set +u; source "$WS/install/setup.bash"; set -u
  "$PY" scripts/check_install_tree.py
  # Leave the workspace out of the tests' environment again.
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV"
  export PYTHONPATH=""
fi

echo "==> pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID, discovery range LOCALHOST)"
PYTEST=("$PY" -m pytest -p no:cacheprovider "$@")
set +e
if [ "$(id -u)" = "0" ] && unshare -n true 2>/dev/null && command -v ip >/dev/null; then
  echo "    running inside a private network namespace (unshare -n; only lo is up)"
  unshare -n -- bash -c 'ip link set lo up && exec "$@"' _ "${PYTEST[@]}"
  rc=$?
elif unshare -rn true 2>/dev/null && command -v ip >/dev/null; then
  echo "    running inside a private user+network namespace (unshare -rn; only lo is up)"
  unshare -rn -- bash -c 'ip link set lo up && exec "$@"' _ "${PYTEST[@]}"
  rc=$?
else
  echo "    WARNING: cannot create a network namespace here; relying on ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST alone"
  "${PYTEST[@]}"
  rc=$?
fi
set -e
if [ "$rc" = "5" ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
