package node

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/dittofs/dittofs-webhook/tests/e2e/framework"
)

// loadWorkers is how many clients make admissions concurrently: about 300 creates (600 webhook calls) a second on
// the 2-core machine, where kubectl processes reach 7.
const loadWorkers = 24

// startLoad is steady admission traffic: each attempt is a server-side dry-run create of a labelled StatefulSet
// through the kube-apiserver of kubeconfig, which calls both webhooks (sideEffects: None allows dry runs) and must
// answer with the cache template injected. The clients are client-go's, with no client-side rate limit.
func startLoad(kubeconfig, ns string) *framework.Load {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	var cs kubernetes.Interface
	if err == nil {
		cfg.QPS = -1                           // no client-side limiter
		cfg.WarningHandler = rest.NoWarnings{} // the emptyDir warning, on every create
		cs, err = kubernetes.NewForConfig(cfg)
	}
	var sts appsv1.StatefulSet
	if err == nil {
		err = yaml.Unmarshal([]byte(statefulSet("load", true)), &sts)
	}
	what := "admissions attempted (server-side dry-run creates, each through both webhooks)"
	return framework.StartLoad(context.Background(), what, loadWorkers, 0,
		func(ctx context.Context, worker, i int) error {
			if err != nil {
				return err
			}
			s := sts.DeepCopy()
			s.Name = fmt.Sprintf("load-%d-%d", worker, i)
			got, err := cs.AppsV1().StatefulSets(ns).Create(ctx, s, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return err
			}
			var names []string
			for _, c := range got.Spec.VolumeClaimTemplates {
				names = append(names, c.Name)
			}
			if !slices.Equal(names, []string{"metadata", "content", "cache"}) {
				return fmt.Errorf("not mutated: volumeClaimTemplates %v", names)
			}
			return nil
		})
}
