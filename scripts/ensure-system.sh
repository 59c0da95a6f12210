#!/usr/bin/env bash
# Makes sure the two things npm cannot bring are on this machine:
#   1. a Vulkan driver (ICD) and loader, so Deno's WebGPU finds an adapter. Any ICD will do (NVIDIA's on a GPU
#      machine); without one we install Mesa's lavapipe (Debian: mesa-vulkan-drivers, which pulls libvulkan1).
#   2. Chromium at /usr/bin/chromium (Debian: chromium) for the Playwright tests; Playwright's own browser
#      download is not used. Override the path with CHROMIUM_PATH (the Playwright config reads it too).
# What is missing is installed with apt-get when we are root and apt-get exists; otherwise the script stops
# and prints the exact command to run. Idempotent: when everything is present it only looks at a few files.
#
# Usage: scripts/ensure-system.sh [--no-browser] [--check]
#   --no-browser  only the Vulkan part (enough for `npm start` and the GPU tests)
#   --check       never install; exit 1 with the command to run if something is missing
set -euo pipefail

want_browser=1
may_install=1
for arg in "$@"; do
  case "$arg" in
    --no-browser) want_browser=0 ;;
    --check) may_install=0 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ensure-system: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
[[ "${TANDEM_SKIP_BROWSER:-}" == 1 ]] && want_browser=0

chromium_path="${CHROMIUM_PATH:-/usr/bin/chromium}"
missing_pkgs=()
missing_what=()

# --- 1. Vulkan loader + ICD -------------------------------------------------------------------------------
have_vulkan_loader() {
  if command -v ldconfig >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then return 0; fi
  local d
  for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib /lib/x86_64-linux-gnu; do
    [[ -e "$d/libvulkan.so.1" ]] && return 0
  done
  return 1
}

find_vulkan_icd() {
  # Prints the ICD the loader will most likely use: NVIDIA's, then lavapipe, then any other.
  local list="${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-}}" f d
  local -a found=()
  if [[ -n "$list" ]]; then
    # An explicit driver list replaces the search path, as it does for the Vulkan loader.
    IFS=: read -r -a files <<<"$list"
    for f in "${files[@]}"; do [[ -f "$f" ]] && found+=("$f"); done
  else
    for d in "${XDG_CONFIG_HOME:-$HOME/.config}/vulkan/icd.d" /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/share/vulkan/icd.d; do
      for f in "$d"/*.json; do [[ -f "$f" ]] && found+=("$f"); done
    done
  fi
  [[ ${#found[@]} -eq 0 ]] && return 1
  for f in "${found[@]}"; do [[ "$(basename "$f")" == nvidia* ]] && { echo "$f"; return 0; }; done
  for f in "${found[@]}"; do [[ "$(basename "$f")" == lvp_icd* ]] && { echo "$f"; return 0; }; done
  echo "${found[0]}"
}

if ! have_vulkan_loader; then
  missing_pkgs+=(libvulkan1)
  missing_what+=("the Vulkan loader (libvulkan.so.1)")
fi
if icd="$(find_vulkan_icd)"; then
  vulkan_note="Vulkan ICD: $icd"
else
  missing_pkgs+=(mesa-vulkan-drivers)
  if [[ -n "${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-}}" ]]; then
    missing_what+=("a Vulkan driver (VK_DRIVER_FILES/VK_ICD_FILENAMES name no existing file)")
  else
    missing_what+=("a Vulkan driver (no ICD in /usr/share/vulkan/icd.d or /etc/vulkan/icd.d; lavapipe is the CPU fallback)")
  fi
  vulkan_note=""
fi

# --- 2. Chromium ------------------------------------------------------------------------------------------
if [[ $want_browser == 1 && ! -x "$chromium_path" ]]; then
  if [[ "$chromium_path" == /usr/bin/chromium ]]; then
    missing_pkgs+=(chromium)
    missing_what+=("Chromium at /usr/bin/chromium (for the browser tests)")
  else
    echo "ensure-system: CHROMIUM_PATH=$chromium_path is not an executable file." >&2
    exit 1
  fi
fi

# --- all present? -----------------------------------------------------------------------------------------
if [[ ${#missing_pkgs[@]} -eq 0 ]]; then
  summary="$vulkan_note"
  [[ $want_browser == 1 ]] && summary+="; Chromium: $chromium_path"
  echo "ensure-system: ok ($summary)"
  exit 0
fi

echo "ensure-system: missing:" >&2
for w in "${missing_what[@]}"; do echo "  - $w" >&2; done

install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing_pkgs[*]}"
have_apt=0
command -v apt-get >/dev/null 2>&1 && have_apt=1

if [[ $have_apt == 0 ]]; then
  echo "ensure-system: apt-get is not available here. Install the equivalent of the Debian packages" >&2
  echo "  ${missing_pkgs[*]}" >&2
  echo "with your system's package manager (a Vulkan loader + driver such as Mesa's lavapipe; Chromium), then" >&2
  echo "run this again. A Chromium elsewhere can be used with CHROMIUM_PATH=/path/to/chromium." >&2
  exit 1
fi

if [[ "${TANDEM_ENSURE_AFTER_INSTALL:-}" == 1 ]]; then
  echo "ensure-system: apt-get installed ${missing_pkgs[*]} but the above is still missing; see the apt output above." >&2
  exit 1
fi

if [[ $may_install == 0 || "$(id -u)" != 0 ]]; then
  echo "ensure-system: run this, then try again:" >&2
  if [[ "$(id -u)" == 0 ]]; then
    echo "  $install_cmd" >&2
  else
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing_pkgs[*]}" >&2
  fi
  exit 1
fi

echo "ensure-system: installing ${missing_pkgs[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y "${missing_pkgs[@]}"

# Check again, without installing, so a package that did not provide what we need is reported.
recheck=()
[[ $want_browser == 0 ]] && recheck+=(--no-browser)
TANDEM_ENSURE_AFTER_INSTALL=1 exec bash "$0" --check "${recheck[@]+"${recheck[@]}"}"
