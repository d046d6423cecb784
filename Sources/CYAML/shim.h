// libyaml (Debian's libyaml-dev), the C parser that reads the policy, kubeconfigs and
// manifests. Only CertgateYAML includes it.
#include <yaml.h>
