/* Activations (and the weights that multiply them) stored as fp32: plain kernel names.
 * The program holds every kernel twice, after this prelude and after precision_f16.h. */
#undef VS_ACT
#undef VS_LD
#undef VS_ST
#undef VS_NAME
#define VS_ACT float
#define VS_LD(p, i) ((p)[i])
#define VS_ST(v, p, i) ((p)[i] = (v))
#define VS_NAME(name) name
