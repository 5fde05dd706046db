#!/bin/sh
sh '/tmp/benches-migrate.8QW6NG/floor-source.sh' >/dev/null & sh '/tmp/benches-migrate.8QW6NG/floor-destination.sh' >/dev/null
wait
