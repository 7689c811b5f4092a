/* Activations (and the weights that multiply them) stored as IEEE half: kernel names end in
 * _f16. Arithmetic stays fp32 (loads widen, stores round to nearest even); LayerNorm
 * parameters and biases stay fp32. */
#undef VS_ACT
#undef VS_LD
#undef VS_ST
#undef VS_NAME
#define VS_ACT VS_HALF
#define VS_LD(p, i) VS_LOAD_HALF(p, i)
#define VS_ST(v, p, i) VS_STORE_HALF(v, p, i)
#define VS_NAME(name) name##_f16
