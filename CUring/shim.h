#ifndef VMHA_CURING_SHIM_H
#define VMHA_CURING_SHIM_H

// <features.h> must come before <liburing.h>: liburing.h defines _XOPEN_SOURCE,
// which otherwise breaks Glibc's fd_set in the Swift module (swiftlang/swift#69311).
#include <features.h>
#include <sys/types.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <linux/falloc.h>
// The kernel's header first: liburing ships its own copy under the same include guard, and
// swift-system's CSystem imports the kernel's; two differing definitions of struct io_uring_sqe
// in one Swift module do not compile.
#include <linux/io_uring.h>
#include <liburing.h>

// IOSQE_* are expressions over enum bits and do not import into Swift.
static const unsigned char vmha_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
static const unsigned char vmha_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const unsigned char vmha_IOSQE_ASYNC = IOSQE_ASYNC;

// RWF_DSYNC for writes with FUA semantics.
static const int vmha_RWF_DSYNC = RWF_DSYNC;

#endif
