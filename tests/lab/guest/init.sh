#!/bin/busybox sh
# shellcheck disable=SC2154  # variables set through eval (per side, per LUN)
# /init of the smbca lab guest: PID 1 of the initramfs built by labvm/image.py.
#
#  1. load the boot modules (/lib/lab/modules.order, group "boot"); start the
#     other groups in the background
#  2. mount the job directory (9p tag "labjob") and read job.env
#  3. mount the host root read-only (9p tag "hostroot") at /newroot with
#     fresh proc, sys, dev, /tmp, /run, /var/tmp, and more host directories
#     (9p tags labshare0, labshare1, ...) at their host paths
#  4. shared LUNs: N fileio backstores on a tmpfs, two tcm_loop targets
#     (initiator A, initiator B), every LUN mapped through both
#  5. write the LUN map (/run/lab/luns.json, luns.env, luns.txt)
#  6. print the START marker, run /run/lab/cmd.sh chrooted in /newroot,
#     print the END marker with its status, power off
#
# The host side (labvm/vm.py) reads the console: everything between the
# markers is COMMAND's output; a FATAL marker means the setup failed.

/bin/busybox mkdir -p /proc /sys /dev /run /usr/bin /usr/sbin /etc/target/pr /etc/target/alua
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
umask 022
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t tmpfs -o mode=0755 run /run

KVER=$(uname -r)
R=/newroot
J=/lab                                   # the job directory (host side: a temp dir)
MARK=
P9="trans=virtio,version=9p2000.L"

stamp() { read -r up _ < /proc/uptime; echo "$1 $up" >> /run/timings; }
warn() { echo "lab-guest: warning: $*"; echo "$*" >> /run/warnings; }
power_off() {
    sync
    [ -d $J/. ] && cp /run/timings /run/warnings $J/ 2>/dev/null
    sync
    poweroff -f
    sleep 10
}
fatal() {
    echo "lab-guest: FATAL: $*"
    [ -d $J/. ] && echo "$*" > $J/fatal
    [ -n "$MARK" ] && printf '%s:FATAL@@\n' "$MARK"
    power_off
}
stamp init

# ------------------------------------------------------------ 1. modules
# modules.order: RELPATH NAME FLAG GROUP OPTIONS (tab separated), dependencies
# first.  FLAG: req / opt (listed), dep (a dependency), soft (soft dependency).
load_modules() {   # FILE -> /run/modules.status lines "ok|fail NAME FLAG GROUP [error]"
    while IFS='	' read -r path name flag group opts; do
        [ -n "$path" ] || continue
        [ -e "/sys/module/$name/initstate" ] && continue
        # shellcheck disable=SC2086
        if err=$(insmod "/lib/modules/$KVER/$path" $opts 2>&1); then
            echo "ok $name $flag $group" >> /run/modules.status
        else
            echo "fail $name $flag $group $err" >> /run/modules.status
        fi
    done < "$1"
}
: > /run/modules.status
MODGROUPS=$(awk -F'\t' '!seen[$4]++ {print $4}' /lib/lab/modules.order)
for g in $MODGROUPS; do awk -F'\t' -v g="$g" '$4 == g' /lib/lab/modules.order > /run/modules.$g; done
load_modules /run/modules.boot
stamp modules-boot
BACKGROUND=
for g in $MODGROUPS; do
    [ "$g" = boot ] && continue
    load_modules /run/modules.$g &
    BACKGROUND="$BACKGROUND $!"
done
finish_modules() {
    for pid in $BACKGROUND; do wait "$pid"; done
    # groups load concurrently: a module may have missed a symbol of a module
    # another group was still loading.  Retry those failures once.
    awk '$1 == "fail" && tolower($0) ~ /unknown symbol/ {print $2}' /run/modules.status > /run/modules.failed
    if [ -s /run/modules.failed ]; then
        awk -F'\t' 'NR == FNR {f[$1] = 1; next} ($2 in f)' /run/modules.failed /lib/lab/modules.order > /run/modules.retry
        load_modules /run/modules.retry
    fi
    for name in $(awk -F'\t' '$3 == "req" {print $2}' /lib/lab/modules.order); do
        [ -e "/sys/module/$name" ] || warn "module $name did not load: $(grep " $name " /run/modules.status | tail -n 1 | cut -d' ' -f5-)"
    done
    cp /run/modules.status /lib/lab/modules.order $J/
    stamp modules-all
}

# ------------------------------------------------------------ 2. job directory
mkdir -p $J
mount -t 9p -o "$P9,msize=262144,cache=none" labjob $J || fatal "cannot mount the job directory (9p tag labjob)"
[ -f $J/job.env ] || fatal "no job.env in the job directory"
. $J/job.env
MARK="@@SMBCA-LAB:$LAB_NONCE"
[ "${LAB_VERBOSE:-0}" = 1 ] && set -x

# ------------------------------------------------------------ 3. host root and mounts
mkdir -p $R
mount -t 9p -o "$P9,ro,msize=262144,cache=loose" hostroot $R || fatal "cannot mount the host root (9p tag hostroot)"
stamp hostroot

# The kernel's request_module() runs /proc/sys/kernel/modprobe in the
# initramfs; busybox modprobe has no modules.dep here, so hand the request to
# the host's kmod inside the chroot.  Loaded modules answer at once.
cat > /sbin/lab-modprobe <<'EOF'
#!/bin/sh
for last; do :; done
case "$last" in *[!A-Za-z0-9_-]*) ;; *) [ -e "/sys/module/$(echo "$last" | tr - _)" ] && exit 0 ;; esac
exec /bin/busybox chroot /newroot /sbin/modprobe "$@"
EOF
chmod 755 /sbin/lab-modprobe
echo /sbin/lab-modprobe > /proc/sys/kernel/modprobe

mount -t proc proc $R/proc || fatal "cannot mount proc in the chroot"
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t tmpfs -o mode=1777 tmp $R/tmp
mount -t tmpfs -o mode=0755 run $R/run
[ -d $R/var/tmp ] && mount -t tmpfs -o mode=1777 vartmp $R/var/tmp
mount -t configfs configfs /sys/kernel/config
mount -t configfs configfs $R/sys/kernel/config
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null
mkdir -p $R/run/lab $R/run/netns
mount --bind $J $R/run/lab
# more host directories at their host paths: the writable ones (cache=mmap
# keeps shared mmap, e.g. sqlite WAL, working), and read-only ones the fresh
# /tmp above would hide (a checkout under /tmp)
while IFS='	' read -r tag path mode; do
    [ -n "$tag" ] || continue
    mkdir -p "$R$path" 2>/dev/null
    if [ "$mode" = ro ]; then opts="ro,cache=loose"; else opts="cache=mmap"; fi
    mount -t 9p -o "$P9,msize=262144,$opts" "$tag" "$R$path" || fatal "cannot mount $path (9p tag $tag)"
done < $J/shares.list
hostname lab
ip link set lo up
stamp mounts

# ------------------------------------------------------------ 4. shared LUNs
T=/sys/kernel/config/target
WWN_A=naa.5001405000000001 INIT_A=naa.50014050000000a1
WWN_B=naa.5001405000000002 INIT_B=naa.50014050000000b1
LUNS=${LAB_LUNS:-2}
lun_name() { case $1 in 0) echo quorum ;; 1) echo data ;; *) echo "data$1" ;; esac; }
lun_mb() { if [ "$1" = 0 ]; then echo "$LAB_QUORUM_MB"; else echo "$LAB_DATA_MB"; fi; }
# VPD 0x80 serial: 25 hex digits.  LIO builds the NAA designator of VPD 0x83
# from the hex digits of the serial, so LUN i reads naa.60014055ca1ab1e<16 hex i>.
lun_serial() { printf '5ca1ab1e%017x' "$1"; }

setup_luns() {
    [ -d $T ] || fatal "no $T (target_core_mod not loaded?)"
    total=16; i=0
    while [ $i -lt "$LUNS" ]; do total=$((total + $(lun_mb $i))); i=$((i + 1)); done
    mkdir -p /luns
    mount -t tmpfs -o mode=0700,size=${total}m luns /luns
    i=0
    while [ $i -lt "$LUNS" ]; do
        name=$(lun_name $i) bytes=$(($(lun_mb $i) * 1048576))
        d=$T/core/fileio_$i/$name
        mkdir -p $d || fatal "cannot create the backstore $d"
        truncate -s $bytes /luns/$name.img
        echo "fd_dev_name=/luns/$name.img,fd_dev_size=$bytes" > $d/control
        # identity, set before the first export (read-only afterwards)
        lun_serial $i > $d/wwn/vpd_unit_serial || fatal "cannot set the serial of LUN $i"
        echo "LAB-$name" | tr a-z A-Z > $d/wwn/product_id || warn "cannot set the product id of LUN $i"
        echo 1 > $d/enable || fatal "cannot enable the backstore of LUN $i"
        # UNMAP and WRITE SAME(unmap) punch holes: guest RAM comes back
        echo 1 > $d/attrib/emulate_tpu
        echo 1 > $d/attrib/emulate_tpws
        i=$((i + 1))
    done
    for side in A B; do
        eval "wwn=\$WWN_$side init=\$INIT_$side"
        tpg=$T/loopback/$wwn/tpgt_1
        mkdir -p $tpg || fatal "cannot create the tcm_loop target $wwn"
        echo "$init" > $tpg/nexus || fatal "cannot create the I_T nexus $init -> $wwn"
        i=0
        while [ $i -lt "$LUNS" ]; do
            mkdir -p $tpg/lun/lun_$i
            ln -s "$T/core/fileio_$i/$(lun_name $i)" $tpg/lun/lun_$i/port || fatal "cannot map LUN $i on $wwn"
            i=$((i + 1))
        done
        addr=$(cat $tpg/address)                 # H:C:T of the new SCSI host
        eval "ADDR_$side=$addr"
    done
    stamp lio
    # wait for every path's sg and sd device
    i=0
    while [ $i -lt "$LUNS" ]; do
        for side in A B; do
            eval "dev=/sys/bus/scsi/devices/\$ADDR_$side:$i"
            n=0 sg='' sd=''
            while [ $n -lt 300 ]; do
                sg=$(ls $dev/scsi_generic 2>/dev/null) sd=$(ls $dev/block 2>/dev/null)
                [ -n "$sg" ] && [ -n "$sd" ] && [ -e /dev/$sg ] && [ -e /dev/$sd ] && break
                n=$((n + 1)); sleep 0.05
            done
            [ -n "$sg" ] && [ -n "$sd" ] || fatal "LUN $i did not appear through initiator $side ($dev)"
            eval "SG_${side}_$i=/dev/$sg SD_${side}_$i=/dev/$sd WWID_${side}_$i=\$(cat $dev/wwid)"
        done
        eval "[ \"\$WWID_A_$i\" = \"\$WWID_B_$i\" ]" || warn "LUN $i: the two paths report different wwids"
        i=$((i + 1))
    done
    stamp devices
    # Mapping LUNs leaves UNIT ATTENTION 3F/0E (REPORTED LUNS DATA HAS CHANGED)
    # on every I_T nexus: consume it so that COMMAND's first command is GOOD.
    devs=; i=0
    while [ $i -lt "$LUNS" ]; do eval "devs=\"\$devs \$SG_A_$i \$SG_B_$i\""; i=$((i + 1)); done
    if [ -x $R/usr/bin/sg_turs ]; then
        # shellcheck disable=SC2086
        chroot $R /bin/sh -c 'for d; do n=0; until sg_turs "$d" >/dev/null 2>&1; do n=$((n + 1)); [ $n -ge 5 ] && { echo "$d"; break; }; done; done' sh $devs > /run/ua.left
        [ -s /run/ua.left ] && warn "TEST UNIT READY still fails on: $(cat /run/ua.left)"
    else
        warn "sg3-utils missing on the host: unit attentions 3F/0E left pending"
    fi
    stamp unit-attentions
}

write_map() {   # luns.json (for programs), luns.env (for shells), luns.txt (for people)
    {
        echo "export LAB_LUNS_JSON=/run/lab/luns.json LAB_LUN_COUNT=$LUNS"
        echo "export LAB_INITIATOR_A=$INIT_A LAB_INITIATOR_B=$INIT_B LAB_TARGET_A=$WWN_A LAB_TARGET_B=$WWN_B"
        echo "export LAB_SCSI_HOST_A=${ADDR_A%%:*} LAB_SCSI_HOST_B=${ADDR_B%%:*}"
        i=0
        while [ $i -lt "$LUNS" ]; do
            u=$(lun_name $i | tr a-z A-Z)
            eval "echo \"export LAB_${u}_SG_A=\$SG_A_$i LAB_${u}_SD_A=\$SD_A_$i LAB_${u}_SG_B=\$SG_B_$i LAB_${u}_SD_B=\$SD_B_$i LAB_${u}_WWID=\$WWID_A_$i\""
            i=$((i + 1))
        done
    } > $J/luns.env
    {
        printf '{\n  "initiators": {\n'
        for side in A B; do
            eval "wwn=\$WWN_$side init=\$INIT_$side addr=\$ADDR_$side"
            sep=,; [ $side = B ] && sep=
            printf '    "%s": {"initiator_wwn": "%s", "target_wwn": "%s", "scsi_host": %s, "scsi_address": "%s",\n' \
                $side $init $wwn "${addr%%:*}" "$addr"
            printf '          "tpg": "%s/loopback/%s/tpgt_1"}%s\n' $T $wwn $sep
        done
        printf '  },\n  "luns": [\n'
        i=0
        while [ $i -lt "$LUNS" ]; do
            name=$(lun_name $i)
            eval "sga=\$SG_A_$i sda=\$SD_A_$i sgb=\$SG_B_$i sdb=\$SD_B_$i wwid=\$WWID_A_$i"
            sep=,; [ $((i + 1)) = "$LUNS" ] && sep=
            printf '    {"lun": %s, "name": "%s", "size_bytes": %s, "serial": "%s", "wwid": "%s",\n' \
                $i $name $(($(lun_mb $i) * 1048576)) "$(lun_serial $i)" "$wwid"
            printf '     "product": "LAB-%s", "backstore": "%s/core/fileio_%s/%s", "backing_file": "/luns/%s.img",\n' \
                "$(echo $name | tr a-z A-Z)" $T $i $name $name
            printf '     "paths": {"A": {"sg": "%s", "sd": "%s", "hctl": "%s:%s"},\n' $sga $sda "$ADDR_A" $i
            printf '               "B": {"sg": "%s", "sd": "%s", "hctl": "%s:%s"}}}%s\n' $sgb $sdb "$ADDR_B" $i $sep
            i=$((i + 1))
        done
        printf '  ]\n}\n'
    } > $J/luns.json
    {
        printf 'initiator A %s -> target %s (scsi host %s)\n' $INIT_A $WWN_A "${ADDR_A%%:*}"
        printf 'initiator B %s -> target %s (scsi host %s)\n' $INIT_B $WWN_B "${ADDR_B%%:*}"
        printf '%-4s %-7s %9s  %-9s %-9s %-9s %-9s  %s\n' LUN name size "A sg" "A sd" "B sg" "B sd" wwid
        i=0
        while [ $i -lt "$LUNS" ]; do
            eval "sga=\$SG_A_$i sda=\$SD_A_$i sgb=\$SG_B_$i sdb=\$SD_B_$i wwid=\$WWID_A_$i"
            printf '%-4s %-7s %5s MiB  %-9s %-9s %-9s %-9s  %s\n' $i "$(lun_name $i)" "$(lun_mb $i)" \
                $sga $sda $sgb $sdb "$wwid"
            i=$((i + 1))
        done
    } > $J/luns.txt
}

if [ "$LUNS" -gt 0 ]; then
    setup_luns
    write_map
else
    echo "export LAB_LUN_COUNT=0" > $J/luns.env
    echo "no shared LUNs (--luns 0)" > $J/luns.txt
fi
finish_modules
dmesg > $J/dmesg.boot
stamp ready
cp /run/timings /run/warnings $J/ 2>/dev/null

# A guest kernel soft lockup (seen once in CI: a CPU stuck in the kernel
# under TCG for the rest of the run): its backtraces go to the output (the
# console shows only KERN_EMERG lines after dmesg -n 1), and once a CPU has
# been stuck LOCKUP_END_S the run ends with LOCKUP_STATUS instead of running
# into the host's timeout.  labvm.vm.LOCKUP_STATUS is the same number.
LOCKUP_STATUS=126
LOCKUP_END_S=120
lockup_watch() {
    reported=0
    while sleep 5; do
        dmesg | grep -q 'soft lockup' || continue
        if [ $reported = 0 ]; then
            reported=1
            echo "lab-guest: the guest kernel reports a soft lockup; CPU backtraces follow"
            echo l > /proc/sysrq-trigger 2>/dev/null
            sleep 2
            dmesg | sed -n '/soft lockup/,$p' | head -200 | sed 's/^/lab-guest: /'
        fi
        stuck=$(dmesg | sed -n 's/.*soft lockup - CPU#[0-9]* stuck for \([0-9]*\)s.*/\1/p' | tail -1)
        if [ "${stuck:-0}" -ge $LOCKUP_END_S ]; then
            echo "lab-guest: a CPU has been stuck in the kernel for ${stuck} s: ending the run"
            dmesg > $J/dmesg.txt
            echo $LOCKUP_STATUS > $J/rc
            printf '%s:END:%s@@\n' "$MARK" $LOCKUP_STATUS
            power_off
        fi
    done
}

# ------------------------------------------------------------ 6. the command
set +x
[ "${LAB_VERBOSE:-0}" = 1 ] || dmesg -n 1
if [ "$LAB_MODE" = shell ]; then
    echo "lab-guest: ready.  exit (or Ctrl-D) powers off; Ctrl-A x kills QEMU."
    cat $J/luns.txt
    setsid cttyhack env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot $R /bin/bash /run/lab/cmd.sh
    rc=$?
else
    stty -opost 2>/dev/null          # bytes through unchanged: no \n -> \r\n
    printf '%s:START@@\n' "$MARK"
    lockup_watch &
    watch_pid=$!
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot $R /bin/bash /run/lab/cmd.sh </dev/null
    rc=$?
    kill $watch_pid 2>/dev/null
fi
stamp command-done
echo $rc > $J/rc
dmesg > $J/dmesg.txt
sync
tac $J/shares.list | while IFS='	' read -r tag path mode; do
    [ -n "$tag" ] && umount "$R$path" 2>/dev/null
done
[ "$LAB_MODE" = shell ] || printf '%s:END:%s@@\n' "$MARK" "$rc"
power_off
