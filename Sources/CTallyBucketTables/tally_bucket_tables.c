// The tables and the lookup are all in the header (static, inline); this file gives the target a source.
#include "tally_bucket_tables.h"
