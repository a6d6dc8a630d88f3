.PHONY: demo test
demo:
	./hack/demo
test:
	./hack/test
