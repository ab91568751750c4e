# dirty.S - a tiny x86 "BIOS" that dirties guest RAM at a controlled rate.
#
# Flat 64 KiB -bios image for `qemu-system-x86_64 -M pc`.  QEMU maps it at
# 0xFFFF0000 (top of 4 GiB) and aliases it at 0xF0000 (just below 1 MiB); the CPU
# starts in real mode at CS:IP = F000:FFF0, i.e. image offset 0xFFF0.
#
# Built by build.sh:  as --32 ; ld -m elf_i386 -Ttext=0 --oformat binary
# so every label's value is its offset inside the image.  The parameter block,
# status block and page record layouts are documented in README.md; keep this file,
# README.md and dev.multifdcolo.qemu.guest.DirtyGuest in sync.
#
# Pacing between bursts (parameter `flags`):
#   flags = 0          busy loop of `delay` iterations.  No interrupts.  The rate
#                      depends on TCG speed and host load.
#   flags = PACE_US    `delay` is the burst period in microseconds.  Bursts follow a
#                      TSC schedule (TSC calibrated once against PIT channel 2, polled,
#                      no interrupts); the vCPU spins on RDTSC between bursts.
#   flags = PACE_US|HALT  same schedule, but the vCPU waits in `hlt` for a one-shot
#                      local APIC timer interrupt (also calibrated against the PIT), so
#                      QEMU is idle between bursts instead of burning a host core.
# In both PACE_US modes a late vCPU catches up (at most MAX_CATCHUP periods).

        .set IMG_BASE,      0xFFFF0000      # where the image sits (high alias)

        .set STATUS,        0x7000          # status block (guest-physical, RAM)
        .set ST_MAGIC,      STATUS + 0x00   # 'DRUN' running, 'DONE' done, 'FAIL' CPU exception
        .set ST_GEN,        STATUS + 0x04   # generation = bursts started
        .set ST_PAGES,      STATUS + 0x08   # page records written in total
        .set ST_PASSES,     STATUS + 0x0C   # full passes over the region completed
        .set ST_DONE,       STATUS + 0x10   # 1 once max_passes reached, else 0
        .set ST_CURSOR,     STATUS + 0x14   # page index that will be written next
        .set ST_BURST,      STATUS + 0x18   # effective parameters (echo)
        .set ST_DELAY,      STATUS + 0x1C
        .set ST_RSTART,     STATUS + 0x20
        .set ST_RPAGES,     STATUS + 0x24
        .set ST_MAXPASS,    STATUS + 0x28
        .set ST_FLAGS,      STATUS + 0x2C
        .set ST_TSC_KHZ,    STATUS + 0x30   # TSC ticks per ms (PACE_US only, else 0)
        .set ST_PERIOD,     STATUS + 0x34   # burst period in TSC ticks (PACE_US only)
        .set ST_LATE,       STATUS + 0x38   # PACE_US: schedule restarts (> MAX_CATCHUP periods late)
        .set ST_VERSION,    STATUS + 0x3C   # layout version
        .set ST_APIC_KHZ,   STATUS + 0x40   # local APIC timer counts per ms (HALT only, else 0)
        .set ST_IRQS,       STATUS + 0x44   # timer interrupts taken (HALT only)
        .set ST_CAL_ROUNDS, STATUS + 0x48   # PACE_US: PIT calibration rounds used (1..20)
        .set ST_CAL_ERR,    STATUS + 0x4C   # PACE_US: calibration window uncertainty, TSC ticks
        .set NEXT_LO,       STATUS + 0x80   # private: next burst deadline (TSC, 64 bit)
        .set NEXT_HI,       STATUS + 0x84
        .set CAL_BEST_U,    STATUS + 0x88   # private: best calibration round
        .set CAL_BEST_W,    STATUS + 0x8C
        .set CAL_BEST_A,    STATUS + 0x90

        .set STACK_TOP,     0x7000          # stack grows down from the status block
        .set IDT,           0x8000          # 256 gates, built at run time (HALT only)

        .set LAPIC,         0xFEE00000
        .set LAPIC_EOI,     LAPIC + 0x0B0
        .set LAPIC_SVR,     LAPIC + 0x0F0
        .set LAPIC_LVT_TMR, LAPIC + 0x320
        .set LAPIC_TMR_INIT, LAPIC + 0x380
        .set LAPIC_TMR_CUR, LAPIC + 0x390
        .set LAPIC_TMR_DIV, LAPIC + 0x3E0
        .set TIMER_VECTOR,  0x40
        .set SPURIOUS_VEC,  0xFF

        .set MAGIC_RUN,     0x4E555244      # "DRUN" as a little-endian word
        .set MAGIC_DONE,    0x454E4F44      # "DONE"
        .set MAGIC_FAIL,    0x4C494146      # "FAIL"
        .set MAGIC_DRTY,    0x59545244      # "DRTY"
        .set MAGIC_PARM,    0x4D525044      # "DPRM"
        .set LAYOUT_VER,    1

        .set FLAG_PACE_US,  1
        .set FLAG_HALT,     2
        .set PIT_10MS,      11932           # 1193182 Hz * 10 ms
        .set MAX_CATCHUP,   256             # periods a late vCPU may catch up on

        .text
        .code16

# ---------------------------------------------------------------------------
# Parameter block: image offset 0x0000 (guest-physical 0xFFFF0000 and 0xF0000).
# Patched in place by DirtyGuest (little-endian 32-bit words).  Defaults = "light".
# ---------------------------------------------------------------------------
        .org 0x0000
params:
p_magic:        .long MAGIC_PARM        # +0x00 "DPRM"
p_version:      .long LAYOUT_VER        # +0x04 layout version
p_burst:        .long 4                 # +0x08 pages per burst (0 is treated as 1)
p_delay:        .long 1200              # +0x0C busy-loop iterations, or period in us (PACE_US)
p_rstart:       .long 0x04000000        # +0x10 region start, bytes (64 MiB), page aligned
p_rpages:       .long 16384             # +0x14 region size in 4 KiB pages (0 is treated as 1)
p_maxpass:      .long 0                 # +0x18 stop after this many full passes (0 = forever)
p_flags:        .long FLAG_PACE_US | FLAG_HALT  # +0x1C bit 0 PACE_US, bit 1 HALT

# ---------------------------------------------------------------------------
# Descriptor tables: flat 4 GiB code (0x08) and data (0x10); the IDT lives in RAM.
# ---------------------------------------------------------------------------
        .org 0x0040
gdt:
        .quad 0x0000000000000000
        .quad 0x00CF9A000000FFFF        # 0x08: base 0, limit 4 GiB, 32-bit code, r/x
        .quad 0x00CF92000000FFFF        # 0x10: base 0, limit 4 GiB, 32-bit data, r/w
gdt_end:
gdt_desc:
        .word gdt_end - gdt - 1
        .long IMG_BASE + gdt
idt_desc:
        .word 256 * 8 - 1
        .long IDT

# ---------------------------------------------------------------------------
# Real mode entry (reached from the reset vector; CS base is 0xFFFF0000, so
# 16-bit offsets are image offsets).
# ---------------------------------------------------------------------------
start16:
        cli
        cld
        inb     $0x92, %al              # fast A20 on (QEMU resets with A20 on anyway)
        orb     $0x02, %al
        andb    $0xFE, %al
        outb    %al, $0x92
        lgdtl   %cs:gdt_desc
        movl    %cr0, %eax
        orl     $1, %eax                # PE
        movl    %eax, %cr0
        ljmpl   $0x08, $(IMG_BASE + start32)

# ---------------------------------------------------------------------------
# 32-bit protected mode, flat segments, no paging.
#
#   %ebx  generation of the current burst
#   %ecx  pages left in this burst / scratch
#   %esi  page index inside the region (cursor)
#   %edi  address of that page
#   %ebp  page records written in total (progress counter)
# ---------------------------------------------------------------------------
        .code32
start32:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movl    $STACK_TOP, %esp

        movb    $0xFF, %al              # mask both PICs: only the local APIC timer is used
        outb    %al, $0x21
        outb    %al, $0xA1

        # clear the status block, then echo the effective parameters
        xorl    %eax, %eax
        movl    $STATUS, %edi
        movl    $(0x94 / 4), %ecx
        rep stosl
        movl    IMG_BASE + p_burst, %eax
        testl   %eax, %eax
        jnz     1f
        incl    %eax
1:      movl    %eax, ST_BURST
        movl    IMG_BASE + p_delay, %eax
        movl    %eax, ST_DELAY
        movl    IMG_BASE + p_rstart, %eax
        andl    $0xFFFFF000, %eax
        movl    %eax, ST_RSTART
        movl    IMG_BASE + p_rpages, %eax
        testl   %eax, %eax
        jnz     2f
        incl    %eax
2:      movl    %eax, ST_RPAGES
        movl    IMG_BASE + p_maxpass, %eax
        movl    %eax, ST_MAXPASS
        movl    IMG_BASE + p_flags, %eax
        testl   $FLAG_PACE_US, %eax     # HALT only makes sense with PACE_US
        jnz     3f
        andl    $~FLAG_HALT, %eax
3:      movl    %eax, ST_FLAGS
        movl    $LAYOUT_VER, ST_VERSION

        testl   $FLAG_PACE_US, ST_FLAGS
        jz      start_dirty
        testl   $FLAG_HALT, ST_FLAGS
        jz      4f
        call    setup_interrupts
4:      call    calibrate
        # period = delay_us * ticks_per_ms / 1000, saturated to 32 bits
        movl    ST_DELAY, %eax
        mull    ST_TSC_KHZ
        cmpl    $1000, %edx
        jb      5f
        movl    $0xFFFFFFFF, %eax
        jmp     6f
5:      movl    $1000, %ecx
        divl    %ecx
6:      movl    %eax, ST_PERIOD
        rdtsc
        movl    %eax, NEXT_LO
        movl    %edx, NEXT_HI

start_dirty:
        xorl    %esi, %esi
        movl    ST_RSTART, %edi
        xorl    %ebp, %ebp
        movl    $MAGIC_RUN, ST_MAGIC

burst_loop:
        incl    ST_GEN                  # new generation
        movl    ST_GEN, %ebx
        movl    ST_BURST, %ecx

page_loop:
        incl    %ebp
        movl    %ebx, 0(%edi)           # record: generation
        movl    %esi, 4(%edi)           #         page index in region
        movl    %ebp, 8(%edi)           #         progress counter (this record's number)
        movl    $MAGIC_DRTY, 12(%edi)   #         "DRTY"
        addl    $4096, %edi
        incl    %esi
        cmpl    ST_RPAGES, %esi
        jb      7f
        # wrapped: one more full pass
        xorl    %esi, %esi
        movl    ST_RSTART, %edi
        incl    ST_PASSES
        movl    ST_MAXPASS, %eax
        testl   %eax, %eax
        jz      7f
        cmpl    ST_PASSES, %eax
        jbe     done
7:      decl    %ecx
        jnz     page_loop

        movl    %ebp, ST_PAGES
        movl    %esi, ST_CURSOR

        testl   $FLAG_PACE_US, ST_FLAGS
        jnz     pace_tsc

        # busy loop of `delay` iterations
        movl    ST_DELAY, %ecx
        jecxz   burst_loop
8:      decl    %ecx
        jnz     8b
        jmp     burst_loop

        # PACE_US: next += period; if late catch up (at most MAX_CATCHUP periods, else
        # restart the schedule), if early wait until the deadline
pace_tsc:
        movl    ST_PERIOD, %eax
        testl   %eax, %eax
        jz      burst_loop
        addl    %eax, NEXT_LO
        adcl    $0, NEXT_HI
        rdtsc
        subl    NEXT_LO, %eax
        sbbl    NEXT_HI, %edx           # edx:eax = now - next
        js      wait_deadline           # early: wait for the deadline
        movl    %eax, %ebx              # ecx:ebx = lateness
        movl    %edx, %ecx
        movl    ST_PERIOD, %eax
        movl    $MAX_CATCHUP, %edx
        mull    %edx                    # edx:eax = MAX_CATCHUP * period
        subl    %ebx, %eax
        sbbl    %ecx, %edx              # limit - lateness
        jns     burst_loop              # a little late: catch up, no wait
        rdtsc                           # far too late (vCPU starved): restart the schedule
        movl    %eax, NEXT_LO
        movl    %edx, NEXT_HI
        incl    ST_LATE
        jmp     burst_loop

wait_deadline:
        rdtsc
        movl    NEXT_LO, %ecx
        movl    NEXT_HI, %ebx
        subl    %eax, %ecx
        sbbl    %edx, %ebx              # ebx:ecx = next - now
        js      burst_loop              # deadline passed
        movl    %ecx, %eax
        orl     %ebx, %eax
        jz      burst_loop
        testl   $FLAG_HALT, ST_FLAGS
        jz      wait_deadline           # spin
        # one-shot APIC timer for the rest: counts = ticks * apic_khz / tsc_khz
        testl   %ebx, %ebx
        jz      9f
        movl    $0xFFFFFFFF, %ecx       # more than 2^32 TSC ticks: sleep a while and re-check
9:      movl    %ecx, %eax
        mull    ST_APIC_KHZ
        cmpl    ST_TSC_KHZ, %edx
        jb      10f
        movl    $0xFFFFFFFF, %eax
        jmp     11f
10:     divl    ST_TSC_KHZ
        testl   %eax, %eax
        jnz     11f
        incl    %eax
11:     movl    %eax, LAPIC_TMR_INIT
        sti                             # interrupt shadow: nothing is taken before hlt
        hlt
        cli
        jmp     wait_deadline

done:
        movl    %ebp, ST_PAGES
        movl    %esi, ST_CURSOR
        movl    $1, ST_DONE
        movl    $MAGIC_DONE, ST_MAGIC
halt_forever:
        movl    $0, LAPIC_TMR_INIT      # stop the timer (harmless without the APIC setup)
        cli
        hlt
        jmp     halt_forever

# ---------------------------------------------------------------------------
# Interrupts (HALT only): IDT with every exception -> fail_handler, every other
# vector -> timer_handler (EOI + iret); local APIC software-enabled, timer one-shot,
# divide by 1, vector TIMER_VECTOR.  Interrupts stay disabled except around hlt.
# ---------------------------------------------------------------------------
setup_interrupts:
        movl    $IDT, %edi
        xorl    %ecx, %ecx
12:     movl    $(IMG_BASE + timer_handler), %eax
        cmpl    $32, %ecx
        jae     13f
        movl    $(IMG_BASE + fail_handler), %eax
13:     movl    %eax, %edx
        andl    $0x0000FFFF, %eax
        orl     $0x00080000, %eax       # selector 0x08 | offset 15..0
        movl    %eax, 0(%edi)
        andl    $0xFFFF0000, %edx
        orl     $0x00008E00, %edx       # offset 31..16 | present, DPL 0, 32-bit interrupt gate
        movl    %edx, 4(%edi)
        addl    $8, %edi
        incl    %ecx
        cmpl    $256, %ecx
        jb      12b
        lidt    IMG_BASE + idt_desc

        movl    $(0x100 | SPURIOUS_VEC), LAPIC_SVR      # APIC software enable
        movl    $0x0B, LAPIC_TMR_DIV                    # divide by 1
        movl    $(0x10000 | TIMER_VECTOR), LAPIC_LVT_TMR # one-shot, masked (unmasked after calibration)
        ret

timer_handler:
        movl    $0, LAPIC_EOI
        incl    ST_IRQS
        iret

fail_handler:
        movl    $MAGIC_FAIL, ST_MAGIC
        cli
        hlt
        jmp     fail_handler

# ---------------------------------------------------------------------------
# calibrate: ST_TSC_KHZ = TSC ticks per ms and ST_APIC_KHZ = local APIC timer counts
# per ms, over a 10 ms window of PIT channel 2 in mode 0 (OUT2 polled via port 0x61).
# Every PIT access is bracketed by RDTSC, so a round knows how uncertain its window is
# (a descheduled vCPU makes it large); rounds are repeated until the uncertainty is
# below 1/512 of the window (normally the first), at most 20, keeping the best.
# 32-bit TSC differences are enough (10 ms << 2^32 ticks).  Clobbers all but %esp.
# ---------------------------------------------------------------------------
calibrate:
        movl    $0xFFFFFFFF, CAL_BEST_U
        movl    $0, ST_CAL_ROUNDS
cal_round:
        incl    ST_CAL_ROUNDS
        movl    $0xFFFFFFFF, LAPIC_TMR_INIT     # (re)start the masked APIC countdown
        inb     $0x61, %al
        andb    $0xFC, %al              # speaker data off
        orb     $0x01, %al              # gate 2 on
        outb    %al, $0x61
        movb    $0xB0, %al              # channel 2, lobyte/hibyte, mode 0, binary
        outb    %al, $0x43
        movb    $(PIT_10MS & 0xFF), %al
        outb    %al, $0x42
        rdtsc
        movl    %eax, %ebx              # t0a
        movb    $(PIT_10MS >> 8), %al
        outb    %al, $0x42              # the count starts here
        movl    LAPIC_TMR_CUR, %esi     # a0
        rdtsc
        movl    %eax, %ecx              # t0b
        movl    %eax, %edi              # prev: TSC before the last read that saw OUT2 low
14:     rdtsc
        movl    %eax, %ebp
        inb     $0x61, %al
        testb   $0x20, %al              # OUT2 high = count expired
        jnz     15f
        movl    %ebp, %edi
        jmp     14b
15:     subl    LAPIC_TMR_CUR, %esi     # a0 - a1: APIC counts (it counts down)
        rdtsc                           # tb
        movl    %eax, %edx
        subl    %edi, %edx
        addl    %ecx, %edx
        subl    %ebx, %edx              # u = (tb - prev) + (t0b - t0a)
        subl    %ebx, %eax              # tb - t0a
        subl    %ecx, %edi              # prev - t0b
        addl    %edi, %eax
        shrl    $1, %eax                # window estimate: the midpoint
        cmpl    CAL_BEST_U, %edx
        jae     16f
        movl    %edx, CAL_BEST_U
        movl    %eax, CAL_BEST_W
        movl    %esi, CAL_BEST_A
16:     cmpl    $0x00800000, %edx       # u >= 2^23 ticks: certainly not good enough
        jae     17f
        shll    $9, %edx
        cmpl    %eax, %edx
        jb      18f                     # u < w / 512
17:     cmpl    $20, ST_CAL_ROUNDS
        jb      cal_round
18:     movl    $0, LAPIC_TMR_INIT
        movl    CAL_BEST_U, %eax
        movl    %eax, ST_CAL_ERR
        movl    $10, %ecx
        movl    CAL_BEST_W, %eax
        xorl    %edx, %edx
        divl    %ecx
        cmpl    $1000, %eax             # < 1 MHz: no usable PIT/TSC; avoid a zero period
        jae     19f
        movl    $1000, %eax
19:     movl    %eax, ST_TSC_KHZ
        movl    CAL_BEST_A, %eax
        xorl    %edx, %edx
        divl    %ecx
        movl    %eax, ST_APIC_KHZ
        testl   $FLAG_HALT, ST_FLAGS
        jz      20f
        testl   %eax, %eax              # a dead APIC timer would hang hlt: spin instead
        jnz     21f
        andl    $~FLAG_HALT, ST_FLAGS
20:     movl    $0, ST_APIC_KHZ
        ret
21:     movl    $TIMER_VECTOR, LAPIC_LVT_TMR    # one-shot, unmasked
        ret

# ---------------------------------------------------------------------------
# Reset vector: image offset 0xFFF0 (F000:FFF0 / 0xFFFFFFF0).
# ---------------------------------------------------------------------------
        .code16
        .org 0xFFF0
        .globl _start
_start:
        jmp     start16
        .org 0xFFF8
        .ascii  "DRTYBIOS"              # tag; pads the image to exactly 64 KiB
