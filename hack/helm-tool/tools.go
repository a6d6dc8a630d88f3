//go:build tools

// Package tools pins the helm CLI that hack/helm builds (the chart tests render with it).
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
