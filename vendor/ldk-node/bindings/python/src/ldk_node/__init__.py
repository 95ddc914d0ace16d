from ldk_node.ldk_node import *
