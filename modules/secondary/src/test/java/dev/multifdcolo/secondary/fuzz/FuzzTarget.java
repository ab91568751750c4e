package dev.multifdcolo.secondary.fuzz;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/** Names a fuzz property's target and its share of {@link Fuzz#TOTAL} inputs. */
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.METHOD)
public @interface FuzzTarget {
    String name();

    double share();
}
