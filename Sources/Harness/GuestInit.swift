/// The test guest's `/init` (busybox sh, PID 1). The workload comes from the kernel command
/// line: `vmha.workload=records|ticks|idle`, optional `vmha.interval=SECONDS`.
///
/// `records`: disk block n (4 KiB, n >= 1) holds record n: a 128-byte header line
/// `VMHAREC1 <n> <boot> <sha256 of payload>` padded with spaces, then 3968 random payload
/// bytes. At boot every record already on the disk is checked first and one line
/// `VERIFY ok=<n> bad=<m> last=<k>` is printed; writing then continues at `last + 1`. Each record
/// is written with O_DIRECT and fsync (busybox dd oflag=direct conv=fsync) and acknowledged with
/// `ACK <n>` on the serial console only after dd returned success.
///
/// `vmha.disks=vda,vdb,…` (a multi-disk domain, ``GuestDomain``): `records` runs one writer per
/// disk, each with its own records and numbering. The first disk's lines are as above; the k-th
/// disk's (k >= 2) carry k after the keyword: `ACK2 <n>`, `VERIFY2 ok= bad= last=`,
/// `VERIFY2-BAD record=<n>`, `WRITE-ERR2 <n>` (``SerialLog``'s `tag`). Without it: /dev/vda only.
///
/// An ACPI power-button press makes the guest print `VMHA POWEROFF` and power off.
///
/// With the domain's virtio-serial ports (``GuestDomain/channels``), two more loops run:
/// - `org.qemu.guest_agent.0`: a guest-agent responder for what libvirt sends (its
///   src/qemu/qemu_agent.c): `guest-sync` with an id (on connecting and after a timeout),
///   answered `{"return": ID}`, and commands: `guest-ping` is answered `{"return": {}}`, anything
///   else `CommandNotFound`. While "off" it reads and answers nothing, like a hung agent.
/// - `vmha.control`: the test's commands, one a line, each answered on the port with
///   `ok <command>`, `failed <command>` (it could not be applied) or `unknown <command>`:
///   `agent off`, `agent on`, `service off`, `service on`.
///
/// With `vmha.ip=ADDRESS/PREFIX` (``GuestDomain/address``) the guest gives its NIC (eth0) that
/// address and runs a TCP service on port 80 (busybox httpd) from boot on; `service off` stops
/// it (connections are refused), `service on` starts it again. Each answers once the port is
/// closed or listening. Without a network both are `unknown`.
enum GuestInit {
    static let modules = [
        "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk",
        "failover", "net_failover", "virtio_net", "button", "evdev", "virtio_console",
    ]

    static let script = #"""
    #!/bin/busybox sh
    /bin/busybox --install -s /bin
    mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mkdir -p /tmp
    for m in \#(modules.joined(separator: " ")); do
      insmod /lib/modules/$m.ko 2>/dev/null || echo "VMHA insmod $m failed"
    done
    # ACPI power button (virDomainShutdown): the first input event on a "Power Button" device
    # powers the guest off cleanly. (busybox acpid did not react to it in this guest.)
    for ev in /sys/class/input/event*; do
      grep -q "Power Button" $ev/device/name 2>/dev/null || continue
      ( dd if=/dev/input/${ev##*/} bs=24 count=1 of=/dev/null 2>/dev/null
        echo "VMHA POWEROFF"; sync; poweroff -f ) &
    done
    arg() { sed -n "s/.*vmha\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
    WORKLOAD=$(arg workload); INTERVAL=$(arg interval); DISKS=$(arg disks | tr , ' ')
    [ -n "$WORKLOAD" ] || WORKLOAD=idle
    [ -n "$INTERVAL" ] || INTERVAL=0.2
    [ -n "$DISKS" ] || DISKS=vda
    BOOT=$(cut -c1-8 /proc/sys/kernel/random/boot_id)
    D=/dev/vda
    for d in $DISKS; do i=0; while [ ! -b /dev/$d ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; done
    echo "VMHA-GUEST-UP workload=$WORKLOAD boot=$BOOT disks=$(ls /sys/block | tr '\n' ' ')"

    # $D the disk, $T its tag (empty for the first disk; its own temporary files too).
    verify() {
      n=1; ok=0; bad=0; last=0
      while dd if=$D of=/tmp/v$T bs=4096 skip=$n count=1 iflag=direct 2>/dev/null && [ -s /tmp/v$T ]; do
        hdr=$(head -c 127 /tmp/v$T | tr -d '\000')
        set -- $hdr
        [ "$1" = VMHAREC1 ] || break
        sum=$(tail -c 3968 /tmp/v$T | sha256sum | cut -d' ' -f1)
        if [ "$2" = "$n" ] && [ "$4" = "$sum" ]; then ok=$((ok+1)); last=$n
        else bad=$((bad+1)); echo "VERIFY$T-BAD record=$n"; fi
        n=$((n+1))
      done
      echo "VERIFY$T ok=$ok bad=$bad last=$last"
    }

    records() {
      D=/dev/$1; T=$2
      verify
      n=$((last+1))
      while :; do
        head -c 3968 /dev/urandom > /tmp/p$T
        sum=$(sha256sum < /tmp/p$T | cut -d' ' -f1)
        { printf '%-127s\n' "VMHAREC1 $n $BOOT $sum"; cat /tmp/p$T; } > /tmp/r$T
        if dd if=/tmp/r$T of=$D bs=4096 seek=$n count=1 oflag=direct conv=notrunc,fsync 2>/dev/null; then
          echo "ACK$T $n"; n=$((n+1))
        else
          echo "WRITE-ERR$T $n"; sleep 1
        fi
        sleep $INTERVAL
      done
    }

    # One writer per disk: the first in the foreground as before, each other one in a subshell.
    all_records() {
      k=0
      for d in $DISKS; do
        k=$((k+1))
        [ $k -gt 1 ] && { records $d $k & }
      done
      records ${DISKS%% *} ""
    }

    ticks() {
      n=0
      while :; do
        n=$((n+1))
        if echo "TICK $n $BOOT" | dd of=$D bs=4096 seek=1 conv=notrunc,fsync 2>/dev/null; then echo "TICK $n"; else echo "TICK-ERR $n"; fi
        sleep 1
      done
    }

    # virtio-serial ports by name, /dev/vportNpM (devtmpfs; no udev for /dev/virtio-ports/NAME).
    # QEMU announces the ports after the driver loads: wait a little; none, no such port.
    port() {
      i=0
      while [ $i -lt 50 ]; do
        for p in /sys/class/virtio-ports/*; do
          [ "$(cat $p/name 2>/dev/null)" = "$1" ] && { echo /dev/${p##*/}; return 0; }
        done
        sleep 0.1; i=$((i+1))
      done
      return 1
    }
    # A port reads EOF while no one is connected on the host side (libvirt connects to the agent
    # only once the guest opened its port): keep it open and read again after a pause.
    agent() {
      exec 3<>"$1"
      while :; do
        while read -r line <&3; do
          [ -e /tmp/agent-off ] && continue
          case $line in
            *'"guest-sync"'*) id=${line##*\"id\":}; id=${id# }; echo "{\"return\": ${id%%[!0-9]*}}" >&3 ;;
            *'"guest-ping"'*) echo '{"return": {}}' >&3 ;;
            *) echo '{"error": {"class": "CommandNotFound", "desc": "not in the vmha test guest"}}' >&3 ;;
          esac
        done
        sleep 0.5
      done
    }
    # The test's TCP service: `service on|off` returns once port 80 listens or no longer does.
    listening() { netstat -ltn | grep -q ':80 '; }
    service() {
      if [ $1 = on ]; then listening || httpd -p 80 -h /www; else killall httpd 2>/dev/null; fi
      i=0
      while [ $i -lt 50 ]; do
        if listening; then [ $1 = on ] && return 0; else [ $1 = off ] && return 0; fi
        sleep 0.1; i=$((i+1))
      done
      return 1
    }
    IP=$(arg ip)
    if [ -n "$IP" ]; then
      ip link set lo up
      i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
      mkdir -p /www; echo vmha > /www/index.html
      if ip addr add $IP dev eth0 && ip link set eth0 up && service on; then echo "VMHA-SERVICE-UP $IP"
      else echo "VMHA network or service failed"; fi
    fi

    # One command a line; a new one is a case here (and a word in the harness's docs).
    control() {
      exec 4<>"$1"
      while :; do
        while read -r cmd <&4; do
          case $cmd in
            "agent off") touch /tmp/agent-off ;;
            "agent on") rm -f /tmp/agent-off ;;
            "service off"|"service on")
              [ -n "$IP" ] || { echo "unknown $cmd" >&4; continue; }
              service ${cmd#service } || { echo "failed $cmd" >&4; continue; } ;;
            *) echo "unknown $cmd" >&4; continue ;;
          esac
          echo "ok $cmd" >&4
        done
        sleep 0.5
      done
    }
    ( p=$(port org.qemu.guest_agent.0) && agent $p ) &
    ( p=$(port vmha.control) && control $p ) &

    echo "VMHA-READY"
    case $WORKLOAD in
      records) all_records ;;
      ticks) ticks ;;
      *) while :; do sleep 3600; done ;;
    esac
    """#
}
