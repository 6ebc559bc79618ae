#include "textflag.h"

// func hostRDTSC() uint64
TEXT ·hostRDTSC(SB), NOSPLIT, $0-8
	RDTSC
	SHLQ $32, DX
	ORQ DX, AX
	MOVQ AX, ret+0(FP)
	RET

// func hostRDRAND() (v uint64, ok bool)
TEXT ·hostRDRAND(SB), NOSPLIT, $0-9
	RDRANDQ AX
	SETCS BL
	MOVQ AX, v+0(FP)
	MOVB BL, ok+8(FP)
	RET

// func hostRDSEED() (v uint64, ok bool)
TEXT ·hostRDSEED(SB), NOSPLIT, $0-9
	RDSEEDQ AX
	SETCS BL
	MOVQ AX, v+0(FP)
	MOVB BL, ok+8(FP)
	RET
