#ifndef VMHA_CLIBVIRT_SHIM_H
#define VMHA_CLIBVIRT_SHIM_H

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
/* virDomainQemuAgentCommand (the `agent` check); in libvirt-qemu.so, hence the second link. */
#include <libvirt/libvirt-qemu.h>

#endif
