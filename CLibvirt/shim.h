#ifndef VMHA_CLIBVIRT_SHIM_H
#define VMHA_CLIBVIRT_SHIM_H

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#endif
