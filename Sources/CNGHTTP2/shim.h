#ifndef CERTGATE_CNGHTTP2_SHIM_H
#define CERTGATE_CNGHTTP2_SHIM_H

#include <nghttp2/nghttp2.h>

#endif
