package org.flatquant;

import org.flatquant.bindings.flatquant_h;

/**
 * Whether a beginning-of-sequence token goes before a text.
 *
 * @since 0.1
 */
public enum Bos {
    /** Follow the model ({@link ModelInfo#addBos()}). */
    DEFAULT(flatquant_h.FQ_BOS_DEFAULT()),
    /** Never add one. */
    NO(flatquant_h.FQ_BOS_NO()),
    /** Always add one (the model must have a BOS token). */
    YES(flatquant_h.FQ_BOS_YES());

    final int code;

    Bos(int code) {
        this.code = code;
    }
}
