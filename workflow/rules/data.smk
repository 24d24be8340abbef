# Data preparation: the embedded datasets are built by rules; user-provided datasets (ImageNet, CIFAR,
# COCO at paper scale) are checked before any job starts (onstart), naming the missing path.

rule prepare_fashion_mnist:
    output:
        prepared_marker("fashion_mnist"),
    params:
        root=lambda w, output: Path(output[0]).parents[2],  # <root>/FashionMNIST/raw/<file>
    log:
        f"{R}/logs/data/fashion_mnist.log",
    conda:
        ENV
    resources:
        **resources_of("light"),
    shell:
        "python -m mokd prepare-data fashion-mnist --root {params.root:q} > {log:q} 2>&1"


rule prepare_cifar_standin:
    input:
        prepared_marker("fashion_mnist"),
    output:
        prepared_marker("cifar_standin"),
    params:
        p=config["prepare"]["cifar_standin"],
        fashion=lambda w, input: Path(input[0]).parents[2],
    log:
        f"{R}/logs/data/cifar_standin.log",
    conda:
        ENV
    resources:
        **resources_of("light"),
    shell:
        "python -m mokd prepare-data cifar-standin --root {params.p[root]:q} --fashion-root {params.fashion:q}"
        " --per-class-train {params.p[per_class_train]} --per-class-val {params.p[per_class_val]}"
        " --seed {params.p[seed]} > {log:q} 2>&1"


rule prepare_coco_synthetic:
    input:
        prepared_marker("fashion_mnist"),
    output:
        prepared_marker("coco_synthetic"),
    params:
        p=config["prepare"]["coco_synthetic"],
        source=as_json({"name": "fashion_mnist", "root": config["prepare"]["fashion_mnist"]["root"]}),
    log:
        f"{R}/logs/data/coco_synthetic.log",
    conda:
        ENV
    resources:
        **resources_of("light"),
    shell:
        "python -m mokd prepare-data coco-synthetic --root {params.p[root]:q} --source {params.source:q}"
        " --n-train {params.p[n_train]} --n-val {params.p[n_val]} --canvas {params.p[canvas]}"
        " --objects {params.p[objects_per_image][0]} {params.p[objects_per_image][1]}"
        " --seed {params.p[seed]} > {log:q} 2>&1"


onstart:
    check_user_datasets()
    check_slurm()
