/* dl_cjson.h - the cJSON functions the library uses to read JSON (user-supplied fields, spool
 * records, server answers), opened on demand (dynlib.h): libcjson.so.1 is loaded only when such
 * JSON is read. */
#ifndef AS_DL_CJSON_H
#define AS_DL_CJSON_H

#include <cjson/cJSON.h>

#include "core/dynlib.h"

#define AS_CJSON_FNS(X)                                                                            \
    X(cJSON_Delete)                                                                                \
    X(cJSON_GetObjectItemCaseSensitive)                                                            \
    X(cJSON_IsNumber)                                                                              \
    X(cJSON_IsObject)                                                                              \
    X(cJSON_IsString)                                                                              \
    X(cJSON_Parse)                                                                                 \
    X(cJSON_ParseWithLength)                                                                       \
    X(cJSON_ParseWithLengthOpts)                                                                   \
    X(cJSON_PrintUnformatted)

struct as_cjson_fns {
    AS_CJSON_FNS(AS_DL_FIELD)
};
extern struct as_cjson_fns as_cjson;
extern as_dynlib as_cjson_lib;

#endif
