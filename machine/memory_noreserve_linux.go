package machine

import "golang.org/x/sys/unix"

// mapNoReserve keeps a large guest RAM from being refused for lack of swap.
const mapNoReserve = unix.MAP_NORESERVE

// madvHugePage asks for transparent huge pages (see allocRAM).
const madvHugePage = unix.MADV_HUGEPAGE
