#!/usr/bin/env bash
# Re-download the vendored GraphiQL playground assets at exactly the pinned versions.
#
# The playground is served entirely by our own server (no CDN at run time), so the minified UMD
# builds below are committed into ./static. This script fetches the same package versions from the
# npm registry with `npm pack` (npm checks each tarball against the registry's sha512 integrity),
# copies only the files the page loads plus each package's licence, and then verifies every file
# against the sha256 sums recorded in static/VERSIONS.txt.
#
#   ./vendor_assets.sh          re-download and overwrite the files in ./static
#   ./vendor_assets.sh --check  re-download into a temp dir and only compare with ./static
#
# To upgrade a package: change its version below, run the script without --check, then update the
# version, integrity and sha256 lines in static/VERSIONS.txt.
set -euo pipefail

GRAPHIQL_VERSION=3.9.0     # latest 3.x
REACT_VERSION=18.3.1
REACT_DOM_VERSION=18.3.1
GRAPHQL_WS_VERSION=6.4.2   # UMD global `graphqlWs`, `createClient` speaks graphql-transport-ws

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
static="$here/static"
mode="${1:-write}"
case "$mode" in
    write | --check) ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

command -v npm >/dev/null || { echo "npm is required (apt-get install npm)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# package-spec  source-path-in-package  destination-file-name
assets=(
    "graphiql@$GRAPHIQL_VERSION      graphiql.min.js                 graphiql.min.js"
    "graphiql@$GRAPHIQL_VERSION      graphiql.min.css                graphiql.min.css"
    "graphiql@$GRAPHIQL_VERSION      LICENSE                         LICENSE.graphiql"
    "react@$REACT_VERSION            umd/react.production.min.js     react.production.min.js"
    "react@$REACT_VERSION            LICENSE                         LICENSE.react"
    "react-dom@$REACT_DOM_VERSION    umd/react-dom.production.min.js react-dom.production.min.js"
    "react-dom@$REACT_DOM_VERSION    LICENSE                         LICENSE.react-dom"
    "graphql-ws@$GRAPHQL_WS_VERSION  umd/graphql-ws.min.js           graphql-ws.min.js"
    "graphql-ws@$GRAPHQL_WS_VERSION  LICENSE.md                      LICENSE.graphql-ws"
)

specs=(
    "graphiql@$GRAPHIQL_VERSION"
    "react@$REACT_VERSION"
    "react-dom@$REACT_DOM_VERSION"
    "graphql-ws@$GRAPHQL_WS_VERSION"
)

out="$work/out"
mkdir -p "$out"
for spec in "${specs[@]}"; do
    name="${spec%@*}"
    version="${spec##*@}"
    mkdir -p "$work/$name"
    (cd "$work" && npm pack --silent "$spec" >/dev/null)
    tar -xzf "$work/$name-$version.tgz" -C "$work/$name"
    license="$(sed -n 's/^ *"license": *"\([^"]*\)".*/\1/p' "$work/$name/package/package.json" | head -n1)"
    if [ "$license" != "MIT" ]; then
        echo "$spec: expected an MIT licence, package.json says '$license'" >&2
        exit 1
    fi
    echo "fetched $spec ($license)"
done

for line in "${assets[@]}"; do
    read -r spec src dest <<<"$line"
    name="${spec%@*}"
    cp "$work/$name/package/$src" "$out/$dest"
done

# Every file must match the sha256 recorded in VERSIONS.txt (lines "sha256  <hex>  <file>").
(cd "$out" && sed -n 's/^sha256  //p' "$static/VERSIONS.txt" | sha256sum --check --strict)

if [ "$mode" = "--check" ]; then
    for line in "${assets[@]}"; do
        read -r _ _ dest <<<"$line"
        cmp "$out/$dest" "$static/$dest"
    done
    echo "static/ matches the pinned upstream packages"
else
    mkdir -p "$static"
    for line in "${assets[@]}"; do
        read -r _ _ dest <<<"$line"
        cp "$out/$dest" "$static/$dest"
    done
    echo "wrote $(( ${#assets[@]} )) files to $static"
fi
