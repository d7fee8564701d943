#!/bin/sh
# PID 1 of every lab node: stays up, reaps children (pptpd and pppd fork), exits at once on
# SIGTERM so `docker stop` takes no 10 s grace period.
trap 'exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $!
done
