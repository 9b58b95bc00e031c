"""The named datasets fastrft reads in the layout their authors distribute them: each name and
the layout it expects. A leaf module (no torch, no numpy): the config checks `data.source`
against these names, the CLI lists them in its help, fastrft.data.layouts reads them.
"""

DATASETS: dict[str, str] = {
    "cub": (
        "CUB-200-2011: ROOT/images.txt ('<id> <relpath>'), ROOT/image_class_labels.txt "
        "('<id> <class id>'), ROOT/train_test_split.txt ('<id> <1=train|0=test>'), "
        "ROOT/classes.txt ('<class id> <name>'), images under ROOT/images/<relpath>; "
        "the test split is val"
    ),
    "aircraft": (
        "FGVC-Aircraft (variant level, 100 classes): ROOT/data/variants.txt (one name per line), "
        "ROOT/data/images_variant_trainval.txt and ROOT/data/images_variant_test.txt "
        "('<id> <variant name>'), images ROOT/data/images/<id>.jpg; trainval is train, "
        "test is val"
    ),
    "caltech256": (
        "Caltech-256: ROOT/256_ObjectCategories/<NNN.name>/*.jpg (257 folders with "
        "257.clutter); no official split: everything is train and the converter draws a "
        "seeded val_fraction split"
    ),
    "imagenette": (
        "Imagenette: ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG (an ImageFolder with "
        "its own split); class names are the wnids"
    ),
    "cars": (
        "Stanford Cars (196 classes), as its authors ship it: ROOT/cars_train/*.jpg, "
        "ROOT/cars_test/*.jpg, ROOT/devkit/cars_meta.mat (class_names), "
        "ROOT/devkit/cars_train_annos.mat and the test labels "
        "cars_test_annos_withlabels.mat in ROOT or ROOT/devkit (struct 'annotations' with "
        "fields fname and class, 1-based; the devkit's cars_test_annos.mat has no labels); "
        "test is val. An ImageFolder re-packaging is read by --source imagefolder "
        "(ROOT/train/<class>/ and ROOT/test/<class>/ or ROOT/val/<class>/)"
    ),
    "dogs": (
        "Stanford Dogs (120 classes): ROOT/Images/<wnid-breed>/*.jpg, "
        "ROOT/lists/train_list.mat and ROOT/lists/test_list.mat (or both in ROOT) with "
        "file_list (paths under Images/) and labels (1-based); class names are the "
        "<wnid-breed> folders; test is val"
    ),
}
