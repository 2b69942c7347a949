/*
 * unwind.c - DWARF unwinding with a cache of rules per return address
 * (x86-64 Linux; elsewhere pmt_nt_unwind_cached always declines).
 *
 * glibc's backtrace() runs libgcc's unwinder, which finds the FDE and
 * interprets its call-frame program at every frame of every stack (about
 * 250 ns a frame).  The rule of a return address never changes while its
 * code stays loaded, so it is computed once, with the same FDE lookup
 * (libgcc's _Unwind_Find_FDE) and the same reading of the program, and
 * kept in a fixed table: CFA = RSP or RBP + offset, the return address
 * at CFA - 8, RBP saved at CFA + offset or unchanged.  Anything else
 * (expressions, signal frames, a rule for RSP, a frame outside the
 * thread's stack, no FDE) declines, and the caller takes the whole stack
 * with backtrace() as before: the answer is always backtrace()'s
 * (PYMEMTRACE_NATIVE_UNWIND_CHECK=1 takes both and counts differences).
 *
 * The table is insert-only and lock-free: a slot's key is claimed with a
 * compare-and-swap, its rule published after with release order; a slot
 * claimed but not yet published reads as a miss.  Code unloaded by
 * dlclose (or JIT frames deregistered) could leave stale rules: those
 * calls (interpose.c) switch the cache off for good.
 */
#define _GNU_SOURCE
#include "preload.h"

#include <dlfcn.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)

#define CACHE_BITS 14
#define CACHE_SIZE (1u << CACHE_BITS)
#define CACHE_PROBES 8
#define STATE_STACK 8

/* DWARF register numbers (x86-64 psABI). */
#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16

/* A rule, packed in one word: bit 0 published, bits 1-2 the kind, bit 3
   CFA from RBP (else RSP), bit 4 RBP saved (else unchanged), bits 16-31
   RBP's offset from the CFA, bits 32-63 the CFA's offset. */
#define RULE_VALID 1u
#define KIND_STEP 0u
#define KIND_END 1u  /* the return address is undefined: the last frame */
#define KIND_NONE 2u /* not cacheable: backtrace() takes the stack */
#define RULE_CFA_RBP 8u
#define RULE_RBP_SAVED 16u

struct cache_slot {
    _Atomic uint64_t key;
    _Atomic uint64_t rule;
};

struct dwarf_bases {
    void *tbase;
    void *dbase;
    void *func;
};

typedef const void *(*find_fde_fn)(void *, struct dwarf_bases *);

/* Written once by pmt_nt_unwind_init (constructor, before any thread of
   the program), then read-only, except `stale` (atomic, set once) and
   the slots (atomic, see above). */
static struct pmt_nt_unwind_runtime {
    find_fde_fn find_fde;
    _Atomic int stale;
    struct cache_slot slots[CACHE_SIZE];
} urt;

/* The state of the call-frame program for the registers that matter. */
enum {
    HOW_SAME = 0,
    HOW_OFFSET,
    HOW_UNDEFINED,
    HOW_BAD
};

typedef struct {
    int cfa_reg; /* -1: an expression */
    int64_t cfa_off;
    int rbp_how;
    int64_t rbp_off;
    int ra_how;
    int64_t ra_off;
} cfa_state;

typedef struct {
    uint64_t code_align;
    int64_t data_align;
    uint8_t fde_enc;
    int has_aug; /* 'z': the FDEs carry augmentation data */
    const uint8_t *insns;
    const uint8_t *end;
} cie_info;

static uint64_t
read_uleb(const uint8_t **p, const uint8_t *end)
{
    uint64_t value = 0;
    unsigned shift = 0;

    while (*p < end) {
        uint8_t byte = *(*p)++;
        if (shift < 64) {
            value |= (uint64_t)(byte & 0x7f) << shift;
        }
        shift += 7;
        if ((byte & 0x80) == 0) {
            break;
        }
    }
    return value;
}

static int64_t
read_sleb(const uint8_t **p, const uint8_t *end)
{
    uint64_t value = 0;
    unsigned shift = 0;
    uint8_t byte = 0;

    while (*p < end) {
        byte = *(*p)++;
        if (shift < 64) {
            value |= (uint64_t)(byte & 0x7f) << shift;
        }
        shift += 7;
        if ((byte & 0x80) == 0) {
            break;
        }
    }
    if (shift < 64 && (byte & 0x40) != 0) {
        value |= ~(uint64_t)0 << shift;
    }
    return (int64_t)value;
}

/* Skips a pointer in encoding enc; -1 for the encodings not handled. */
static int
skip_encoded(const uint8_t **p, const uint8_t *end, uint8_t enc)
{
    if (enc == 0xff) {
        return 0;
    }
    if ((enc & 0x70) == 0x50) {
        return -1; /* aligned */
    }
    switch (enc & 0x0f) {
    case 0x00:
    case 0x04:
    case 0x0c:
        *p += 8;
        break;
    case 0x02:
    case 0x0a:
        *p += 2;
        break;
    case 0x03:
    case 0x0b:
        *p += 4;
        break;
    case 0x01:
        (void)read_uleb(p, end);
        break;
    case 0x09:
        (void)read_sleb(p, end);
        break;
    default:
        return -1;
    }
    return *p <= end ? 0 : -1;
}

/* The CIE an FDE points to; -1 when it is one this reading declines. */
static int
parse_cie(const uint8_t *cie, cie_info *info)
{
    uint32_t len;
    const uint8_t *p, *end, *aug, *aug_data = NULL;
    uint8_t version;

    memcpy(&len, cie, 4);
    if (len == 0 || len == 0xffffffffu) {
        return -1;
    }
    p = cie + 8; /* length, CIE id */
    end = cie + 4 + len;
    version = *p++;
    aug = p;
    while (p < end && *p != 0) {
        p++;
    }
    if (p >= end) {
        return -1;
    }
    p++;
    info->code_align = read_uleb(&p, end);
    info->data_align = read_sleb(&p, end);
    if ((version == 1 ? *p++ : read_uleb(&p, end)) != REG_RA) {
        return -1;
    }
    info->fde_enc = 0x00;
    info->has_aug = aug[0] == 'z';
    if (aug[0] == 'z') {
        uint64_t aug_len = read_uleb(&p, end);
        aug_data = p;
        p += aug_len;
        for (aug++; *aug != 0; aug++) {
            if (*aug == 'R') {
                info->fde_enc = *aug_data++;
            }
            else if (*aug == 'L') {
                aug_data++;
            }
            else if (*aug == 'P') {
                uint8_t enc = *aug_data++;
                if (skip_encoded(&aug_data, p, enc) < 0) {
                    return -1;
                }
            }
            else {
                return -1; /* 'S' (a signal frame) and the unknown ones */
            }
        }
    }
    else if (aug[0] != 0) {
        return -1;
    }
    if (p > end) {
        return -1;
    }
    info->insns = p;
    info->end = end;
    return 0;
}

static void
set_reg(cfa_state *st, uint64_t reg, int how, int64_t off)
{
    if (reg == REG_RBP) {
        st->rbp_how = how;
        st->rbp_off = off;
    }
    else if (reg == REG_RA) {
        st->ra_how = how;
        st->ra_off = off;
    }
    else if (reg == REG_RSP) {
        /* libgcc would give RSP this rule instead of the CFA */
        st->cfa_reg = -2;
    }
}

static void
restore_reg(cfa_state *st, const cfa_state *initial, uint64_t reg)
{
    if (reg == REG_RBP) {
        st->rbp_how = initial->rbp_how;
        st->rbp_off = initial->rbp_off;
    }
    else if (reg == REG_RA) {
        st->ra_how = initial->ra_how;
        st->ra_off = initial->ra_off;
    }
    else if (reg == REG_RSP) {
        st->cfa_reg = -2;
    }
}

/* Runs a call-frame program while loc < pc (libgcc's condition for a
   frame that is not a signal frame), as libgcc's execute_cfa_program
   does for the registers that matter.  initial is NULL for the CIE's
   own program (it may not advance).  -1: declined. */
static int
run_program(const uint8_t *p, const uint8_t *end, const cie_info *cie,
            cfa_state *st, const cfa_state *initial, uintptr_t loc,
            uintptr_t pc)
{
    cfa_state saved[STATE_STACK];
    int depth = 0;

    while (p < end && loc < pc) {
        uint8_t op = *p++;
        uint64_t reg, delta;
        int64_t off;

        switch (op & 0xc0) {
        case 0x40:
            if (initial == NULL) {
                return -1;
            }
            loc += (op & 0x3f) * cie->code_align;
            continue;
        case 0x80:
            off = (int64_t)read_uleb(&p, end) * cie->data_align;
            set_reg(st, op & 0x3f, HOW_OFFSET, off);
            continue;
        case 0xc0:
            if (initial == NULL) {
                return -1;
            }
            restore_reg(st, initial, op & 0x3f);
            continue;
        default:
            break;
        }
        switch (op) {
        case 0x00: /* nop */
            break;
        case 0x02: /* advance_loc1 */
        case 0x03: /* advance_loc2 */
        case 0x04: /* advance_loc4 */
            if (initial == NULL) {
                return -1;
            }
            if (op == 0x02) {
                delta = *p;
                p += 1;
            }
            else if (op == 0x03) {
                uint16_t v;
                memcpy(&v, p, 2);
                delta = v;
                p += 2;
            }
            else {
                uint32_t v;
                memcpy(&v, p, 4);
                delta = v;
                p += 4;
            }
            loc += delta * cie->code_align;
            break;
        case 0x05: /* offset_extended */
            reg = read_uleb(&p, end);
            off = (int64_t)read_uleb(&p, end) * cie->data_align;
            set_reg(st, reg, HOW_OFFSET, off);
            break;
        case 0x06: /* restore_extended */
            if (initial == NULL) {
                return -1;
            }
            restore_reg(st, initial, read_uleb(&p, end));
            break;
        case 0x07: /* undefined */
            set_reg(st, read_uleb(&p, end), HOW_UNDEFINED, 0);
            break;
        case 0x08: /* same_value */
            reg = read_uleb(&p, end);
            set_reg(st, reg, reg == REG_RSP ? HOW_BAD : HOW_SAME, 0);
            break;
        case 0x09: /* register */
            reg = read_uleb(&p, end);
            (void)read_uleb(&p, end);
            set_reg(st, reg, HOW_BAD, 0);
            break;
        case 0x0a: /* remember_state */
            if (depth == STATE_STACK) {
                return -1;
            }
            saved[depth++] = *st;
            break;
        case 0x0b: /* restore_state: the CFA comes back too (libgcc) */
            if (depth == 0) {
                return -1;
            }
            *st = saved[--depth];
            break;
        case 0x0c: /* def_cfa */
            st->cfa_reg = (int)read_uleb(&p, end);
            st->cfa_off = (int64_t)read_uleb(&p, end);
            break;
        case 0x0d: /* def_cfa_register */
            st->cfa_reg = (int)read_uleb(&p, end);
            break;
        case 0x0e: /* def_cfa_offset */
            st->cfa_off = (int64_t)read_uleb(&p, end);
            break;
        case 0x0f: /* def_cfa_expression */
            delta = read_uleb(&p, end);
            p += delta;
            st->cfa_reg = -1;
            break;
        case 0x10: /* expression */
        case 0x16: /* val_expression */
            reg = read_uleb(&p, end);
            delta = read_uleb(&p, end);
            p += delta;
            set_reg(st, reg, HOW_BAD, 0);
            break;
        case 0x11: /* offset_extended_sf */
            reg = read_uleb(&p, end);
            off = read_sleb(&p, end) * cie->data_align;
            set_reg(st, reg, HOW_OFFSET, off);
            break;
        case 0x12: /* def_cfa_sf */
            st->cfa_reg = (int)read_uleb(&p, end);
            st->cfa_off = read_sleb(&p, end) * cie->data_align;
            break;
        case 0x13: /* def_cfa_offset_sf */
            st->cfa_off = read_sleb(&p, end) * cie->data_align;
            break;
        case 0x14: /* val_offset */
            reg = read_uleb(&p, end);
            (void)read_uleb(&p, end);
            set_reg(st, reg, HOW_BAD, 0);
            break;
        case 0x15: /* val_offset_sf */
            reg = read_uleb(&p, end);
            (void)read_sleb(&p, end);
            set_reg(st, reg, HOW_BAD, 0);
            break;
        case 0x2e: /* GNU_args_size */
            (void)read_uleb(&p, end);
            break;
        case 0x2f: /* GNU_negative_offset_extended */
            reg = read_uleb(&p, end);
            off = -(int64_t)read_uleb(&p, end) * cie->data_align;
            set_reg(st, reg, HOW_OFFSET, off);
            break;
        default: /* set_loc, vendor extensions */
            return -1;
        }
    }
    return p <= end ? 0 : -1;
}

/* The rule of the frame whose return address (or resume address) is pc,
   computed the way libgcc does for a frame that is not a signal frame. */
static uint64_t
compute_rule(uintptr_t pc)
{
    const uint64_t none = RULE_VALID | KIND_NONE << 1;
    struct dwarf_bases bases = {0};
    const uint8_t *fde, *p, *end;
    uint32_t len;
    int32_t cie_delta;
    cie_info cie;
    cfa_state st = {-1, 0, HOW_SAME, 0, HOW_BAD, 0};
    cfa_state initial;
    uint64_t rule;

    fde = urt.find_fde((void *)(pc - 1), &bases);
    if (fde == NULL) {
        return none; /* the stack's end, or libgcc's signal-frame guess */
    }
    memcpy(&len, fde, 4);
    memcpy(&cie_delta, fde + 4, 4);
    if (len == 0xffffffffu || parse_cie(fde + 4 - cie_delta, &cie) < 0) {
        return none;
    }
    if (run_program(cie.insns, cie.end, &cie, &st, NULL, 0, 1) < 0) {
        return none;
    }
    initial = st;
    end = fde + 4 + len;
    p = fde + 8;
    if (skip_encoded(&p, end, cie.fde_enc) < 0 ||
        skip_encoded(&p, end, cie.fde_enc & 0x0f) < 0) {
        return none;
    }
    if (cie.has_aug) {
        uint64_t aug_len = read_uleb(&p, end);
        p += aug_len;
    }
    if (p > end || run_program(p, end, &cie, &st, &initial,
                               (uintptr_t)bases.func, pc) < 0) {
        return none;
    }
    if (st.ra_how == HOW_UNDEFINED) {
        return RULE_VALID | KIND_END << 1;
    }
    if ((st.cfa_reg != REG_RSP && st.cfa_reg != REG_RBP) ||
        st.ra_how != HOW_OFFSET || st.ra_off != -8 ||
        (st.rbp_how != HOW_SAME && st.rbp_how != HOW_OFFSET) ||
        st.cfa_off < INT32_MIN || st.cfa_off > INT32_MAX ||
        st.rbp_off < INT16_MIN || st.rbp_off > INT16_MAX) {
        return none;
    }
    rule = RULE_VALID | KIND_STEP << 1;
    if (st.cfa_reg == REG_RBP) {
        rule |= RULE_CFA_RBP;
    }
    if (st.rbp_how == HOW_OFFSET) {
        rule |= RULE_RBP_SAVED | (uint64_t)(uint16_t)(int16_t)st.rbp_off << 16;
    }
    rule |= (uint64_t)(uint32_t)(int32_t)st.cfa_off << 32;
    return rule;
}

static uint64_t
lookup_rule(uintptr_t pc)
{
    uint32_t h = (uint32_t)((pc * 0x9e3779b97f4a7c15ull) >> (64 - CACHE_BITS));
    uint64_t rule;
    int i;

    for (i = 0; i < CACHE_PROBES; i++) {
        struct cache_slot *slot = &urt.slots[(h + i) & (CACHE_SIZE - 1)];
        uint64_t key = atomic_load_explicit(&slot->key, memory_order_acquire);
        if (key == pc) {
            rule = atomic_load_explicit(&slot->rule, memory_order_acquire);
            if (rule & RULE_VALID) {
                return rule;
            }
            return compute_rule(pc); /* being published by another thread */
        }
        if (key == 0) {
            break;
        }
    }
    rule = compute_rule(pc);
    for (i = 0; i < CACHE_PROBES; i++) {
        struct cache_slot *slot = &urt.slots[(h + i) & (CACHE_SIZE - 1)];
        uint64_t expected = 0;
        if (atomic_compare_exchange_strong(&slot->key, &expected, pc)) {
            atomic_store_explicit(&slot->rule, rule, memory_order_release);
            break;
        }
        if (expected == pc) {
            break;
        }
    }
    return rule;
}

void
pmt_nt_unwind_init(void)
{
    void *lib = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD);

    if (lib != NULL) {
        urt.find_fde = (find_fde_fn)dlsym(lib, "_Unwind_Find_FDE");
    }
}

void
pmt_nt_unwind_stale(void)
{
    atomic_store(&urt.stale, 1);
}

/* The frames above the return address `caller` (the same frames
   backtrace() gives from there, at most depth), or -1 when this walk
   declines (then backtrace() takes the whole stack).  own is how many
   frames of the tracer may come before caller (backtrace's search). */
__attribute__((noinline)) int
pmt_nt_unwind_cached(pmt_frame *frames, int depth, void *caller, int own,
                     uintptr_t lo, uintptr_t hi)
{
    const uintptr_t *fp = __builtin_frame_address(0);
    uintptr_t pc, rsp, rbp;
    int k = 0, seen = 0, started = 0;

    if (urt.find_fde == NULL ||
        atomic_load_explicit(&urt.stale, memory_order_relaxed)) {
        return -1;
    }
    /* This function keeps a frame pointer (-fno-omit-frame-pointer): its
       caller's state at the return address. */
    pc = fp[1];
    rsp = (uintptr_t)fp + 16;
    rbp = fp[0];
    while (k < depth) {
        uint64_t rule;
        uintptr_t cfa;
        if (pc == 0) {
            break;
        }
        if (!started) {
            if ((void *)pc == caller) {
                started = 1;
            }
            else if (++seen >= own) {
                return -1;
            }
        }
        if (started) {
            frames[k].code = (void *)pc;
            frames[k].addr = 0;
            frames[k].unused = 0;
            k++;
            if (k == depth) {
                break;
            }
        }
        rule = lookup_rule(pc);
        if (((rule >> 1) & 3) == KIND_END) {
            break;
        }
        if (((rule >> 1) & 3) != KIND_STEP) {
            return -1;
        }
        cfa = ((rule & RULE_CFA_RBP) ? rbp : rsp) +
              (intptr_t)(int32_t)(rule >> 32);
        if (cfa <= rsp || cfa - 8 < lo || cfa > hi || (cfa & 7) != 0) {
            return -1;
        }
        if (rule & RULE_RBP_SAVED) {
            uintptr_t at = cfa + (intptr_t)(int16_t)(rule >> 16);
            if (at < lo || at > hi - 8) {
                return -1;
            }
            rbp = *(const uintptr_t *)at;
        }
        pc = *(const uintptr_t *)(cfa - 8);
        rsp = cfa;
    }
    return started ? k : -1;
}

#else /* not x86-64 Linux */

void
pmt_nt_unwind_init(void)
{
}

void
pmt_nt_unwind_stale(void)
{
}

int
pmt_nt_unwind_cached(pmt_frame *frames, int depth, void *caller, int own,
                     uintptr_t lo, uintptr_t hi)
{
    (void)frames;
    (void)depth;
    (void)caller;
    (void)own;
    (void)lo;
    (void)hi;
    return -1;
}

#endif
