#!/bin/bash
echo "GUEST hello"; uname -a; modprobe quota_v2 && echo PASS modprobe
echo "GUEST DONE"
echo o >/proc/sysrq-trigger; sleep 30
