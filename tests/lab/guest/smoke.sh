#!/bin/bash
# The lab's smoke checks, run inside the guest (tests/lab/test_lab.py, and
# `tests/lab/lab.py selftest`).  Needs the default two LUNs.  Prints one
# "ok - ..." or "not ok - ..." line per check and a closing count; exits 0
# only if every check passed.
#
#   1. identity: both initiators see both LUNs, with the same VPD 0x83 NAA
#      designator on each path (and the one the LUN map promises), distinct
#      per LUN
#   2. SCSI-2 on the quorum LUN: RESERVE(6) via A makes B's WRITE(10) fail
#      with RESERVATION CONFLICT; the data LUN is not affected; RELEASE(6)
#      via A clears it
#   3. persistent reservations on the data LUN: REGISTER + RESERVE (type 5,
#      WRITE EXCLUSIVE - REGISTRANTS ONLY) via A block B's WRITE (not its
#      READ) until B registers; PREEMPT via B moves the reservation (A sees
#      UNIT ATTENTION, then RESERVATION CONFLICT); CLEAR ends it.  PR OUT
#      runs under `timeout`: PREEMPT AND ABORT hangs tcm_loop on kernel 6.1.
set -u
export LC_ALL=C
passed=0 failed=0
check() {   # DESCRIPTION EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then
        echo "ok - $1: $3"; passed=$((passed + 1))
    else
        echo "not ok - $1: expected $2, got $3"; failed=$((failed + 1))
    fi
}

# scsi DEV CDB...: the sg_raw outcome as a word (sg3_utils exit statuses)
scsi() {
    local dev=$1; shift
    local data=()
    [ "$1" = 2a ] && data=(-s 512 -i /tmp/smoke-block)
    sg_raw "${data[@]}" "$dev" "$@" >/tmp/smoke-sg_raw.log 2>&1
    case $? in
        0) echo GOOD ;; 6) echo UNIT-ATTENTION ;; 24) echo RESERVATION-CONFLICT ;; *) echo "ERROR:$?" ;;
    esac
}
# prout DEV ARGS...: a PERSISTENT RESERVE OUT, bounded in time
prout() {
    local dev=$1; shift
    timeout 30 sg_persist --no-inquiry --out "$@" "$dev" >/tmp/smoke-prout.log 2>&1
    case $? in
        0) echo GOOD ;; 6) echo UNIT-ATTENTION ;; 24) echo RESERVATION-CONFLICT ;; 124) echo HUNG ;; *) echo "ERROR:$?" ;;
    esac
}
# naa DEV: the logical unit's NAA designator from VPD page 0x83
naa() { sg_vpd --page=di_lu "$1" 2>&1 | awk '/designator type: NAA/ {getline; print "naa." substr($1, 3); exit}'; }
serial() { sg_inq --page=0x80 "$1" 2>&1 | sed -n 's/.*Unit serial number: *//p'; }
keys() {   # the registered keys, comma separated, or "none"
    sg_persist --no-inquiry --in --read-keys "$1" 2>&1 |
        awk '/^ +0x/ {printf "%s%s", s, $1; s = ","} END {print s ? "" : "none"}'
}
holder() {   # "KEY TYPE" of the persistent reservation, or "none"
    sg_persist --no-inquiry --in --read-reservation "$1" 2>&1 |
        awk '/Key=/ {sub(/.*Key=/, ""); k = $1} /type:/ {sub(/.*type: */, ""); t = $0}
             END {print (k ? k " " t : "none")}'
}

if [ "${LAB_LUN_COUNT:-0}" -lt 2 ]; then
    echo "not ok - the smoke checks need the quorum and the data LUN (--luns 2)"
    echo "smoke: 0 passed, 1 failed"
    exit 1
fi
QA=$LAB_QUORUM_SG_A QB=$LAB_QUORUM_SG_B DA=$LAB_DATA_SG_A DB=$LAB_DATA_SG_B
head -c 512 /dev/zero > /tmp/smoke-block
TUR="00 00 00 00 00 00"
RESERVE6="16 00 00 00 00 00"
RELEASE6="17 00 00 00 00 00"
WRITE10="2a 00 00 00 00 08 00 00 01 00"      # one block at LBA 8
READ10="28 00 00 00 00 08 00 00 01 00"

echo "# lab smoke on $(uname -r): quorum A=$QA B=$QB, data A=$DA B=$DB"
# ---------------------------------------------------------------- 1. identity
check "quorum LUN: VPD 0x83 NAA via A, via B, in the map" \
    "$LAB_QUORUM_WWID $LAB_QUORUM_WWID $LAB_QUORUM_WWID" "$(naa "$QA") $(naa "$QB") $LAB_QUORUM_WWID"
check "data LUN: VPD 0x83 NAA via A, via B, in the map" \
    "$LAB_DATA_WWID $LAB_DATA_WWID $LAB_DATA_WWID" "$(naa "$DA") $(naa "$DB") $LAB_DATA_WWID"
check "quorum and data LUN designators differ" yes "$([ "$(naa "$QA")" != "$(naa "$DA")" ] && echo yes || echo no)"
check "quorum LUN: VPD 0x80 serial via A = via B" "$(serial "$QA")" "$(serial "$QB")"
# shellcheck disable=SC2086
{
check "TEST UNIT READY on all four paths (no unit attention left over)" \
    "GOOD GOOD GOOD GOOD" "$(scsi $QA $TUR) $(scsi $QB $TUR) $(scsi $DA $TUR) $(scsi $DB $TUR)"

# ---------------------------------------------------------------- 2. SCSI-2
check "quorum: RESERVE(6) via A" GOOD "$(scsi $QA $RESERVE6)"
check "quorum: WRITE(10) via B while A holds it" RESERVATION-CONFLICT "$(scsi $QB $WRITE10)"
check "quorum: RESERVE(6) via B while A holds it" RESERVATION-CONFLICT "$(scsi $QB $RESERVE6)"
check "quorum: WRITE(10) via A (the holder)" GOOD "$(scsi $QA $WRITE10)"
check "data: WRITE(10) via B (the reservation covers one LU)" GOOD "$(scsi $DB $WRITE10)"
check "quorum: RELEASE(6) via A" GOOD "$(scsi $QA $RELEASE6)"
check "quorum: WRITE(10) via B after the release" GOOD "$(scsi $QB $WRITE10)"

# ---------------------------------------------------------------- 3. persistent reservations
check "data: PR REGISTER key 0xa1 via A" GOOD "$(prout $DA --register --param-sark=0xa1)"
check "data: PR RESERVE type 5 (WE-RO) key 0xa1 via A" GOOD "$(prout $DA --reserve --param-rk=0xa1 --prout-type=5)"
check "data: READ RESERVATION via B" "0xa1 Write Exclusive, registrants only" "$(holder $DB)"
check "data: WRITE(10) via B, not registered" RESERVATION-CONFLICT "$(scsi $DB $WRITE10)"
check "data: READ(10) via B, not registered (WE-RO allows reads)" GOOD "$(scsi $DB $READ10)"
check "data: WRITE(10) via A (the holder)" GOOD "$(scsi $DA $WRITE10)"
check "data: PR REGISTER key 0xb1 via B" GOOD "$(prout $DB --register --param-sark=0xb1)"
check "data: WRITE(10) via B, registered" GOOD "$(scsi $DB $WRITE10)"
check "data: READ KEYS" "0xa1,0xb1" "$(keys $DA)"
check "data: PR PREEMPT of 0xa1 via B (plain PREEMPT)" GOOD \
    "$(prout $DB --preempt --param-rk=0xb1 --param-sark=0xa1 --prout-type=5)"
check "data: READ RESERVATION via B after the preemption" "0xb1 Write Exclusive, registrants only" "$(holder $DB)"
check "data: TEST UNIT READY via A, preempted (registrations preempted)" UNIT-ATTENTION "$(scsi $DA $TUR)"
check "data: WRITE(10) via A, preempted" RESERVATION-CONFLICT "$(scsi $DA $WRITE10)"
check "data: PR CLEAR via B" GOOD "$(prout $DB --clear --param-rk=0xb1)"
check "data: READ KEYS after CLEAR" none "$(keys $DB)"
check "data: WRITE(10) via A after CLEAR" GOOD "$(scsi $DA $WRITE10)"
}
echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
