"""Paper setting: CIFAR-10, VGG-16 with batch norm (Table II: |D_f| = 500, |D_s| = 5000, 20 epochs).

    tfds build cifar10 --file_format=array_record
    jaxunlearn run --config configs/cifar10_vgg16.py --workdir runs/cifar10_vgg16
"""

from configs import cifar10_resnet18


def get_config():
  c = cifar10_resnet18.get_config()
  c.setting = "cifar10_vgg16"
  c.model = "vgg16"
  return c
