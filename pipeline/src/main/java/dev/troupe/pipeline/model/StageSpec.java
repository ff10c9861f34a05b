package dev.troupe.pipeline.model;

/**
 * Which part of the model one pipeline stage holds: decoder layers {@code [firstLayer, endLayer)},
 * plus the token embedding on the first stage and the final norm and output head on the last.
 */
public record StageSpec(int firstLayer, int endLayer, boolean hasEmbedding, boolean hasHead) {
  public StageSpec {
    if (firstLayer < 0 || endLayer < firstLayer) {
      throw new IllegalArgumentException("bad layer range [" + firstLayer + ", " + endLayer + ")");
    }
  }

  /** The whole model as one stage. */
  public static StageSpec full(ModelConfig config) {
    return new StageSpec(0, config.numLayers(), true, true);
  }

  /** Stage {@code index} of a pipeline whose stages end at the given layer boundaries. */
  public static StageSpec of(ModelConfig config, int firstLayer, int endLayer) {
    if (endLayer > config.numLayers()) {
      throw new IllegalArgumentException(
          "layer range ["
              + firstLayer
              + ", "
              + endLayer
              + ") beyond the model's "
              + config.numLayers()
              + " layers");
    }
    return new StageSpec(firstLayer, endLayer, firstLayer == 0, endLayer == config.numLayers());
  }

  public int layerCount() {
    return endLayer - firstLayer;
  }
}
